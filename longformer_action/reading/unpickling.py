"""Unpickle a checkpoint in tiers, safest first, running none of its code unless trusted.

1. torch's weights-only loader (tensors and plain containers only);
2. where that refuses, a restricted unpickler: the same allow-list of globals, and every other
   global replaced by an inert placeholder (``Inert``) that records its arguments and runs nothing;
3. full unpickling, only with ``--trust-checkpoint``; a failure to import or rebuild one of the
   file's objects is told apart from damage to the file: it names the object."""

from __future__ import annotations

import pickle
import types
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..filesystem import read_error
from ..text import first_line
from .formats import detect_format


class Inert:
    """Stands in for an object the checkpoint would have built. Runs nothing; records arguments."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_inert", {"args": args, "state": None, "items": {}, "list": []})
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self._inert["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._inert["items"][key] = value

    def append(self, value: Any) -> None:
        self._inert["list"].append(value)

    def extend(self, values: Any) -> None:
        self._inert["list"].extend(values)

    def inert_items(self) -> dict[Any, Any]:
        """Mapping-like content: dict items set while unpickling, else a ``__dict__`` state."""
        items = dict(self._inert["items"])
        state = self._inert["state"]
        if isinstance(state, dict):
            for k, v in state.items():
                items.setdefault(k, v)
        return items

    def __repr__(self) -> str:
        return f"<inert {self._qualname}>"


def _as_pickle_module(unpickler: type[pickle.Unpickler]) -> types.ModuleType:
    """A module torch.load takes as ``pickle_module``: ``Unpickler`` and ``load`` from ``unpickler``."""
    module = types.ModuleType("pickle")
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: unpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    return module


def _restricted_pickle_module(replaced: set[str], extra: Mapping[str, Any] | None = None) -> types.ModuleType:
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = {**_get_allowed_globals(), **(extra or {})}
    placeholders: dict[str, type] = {}

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            qualname = f"{module}.{name}"
            if qualname in allowed:
                return allowed[qualname]
            replaced.add(qualname)
            if qualname not in placeholders:
                placeholders[qualname] = type(name, (Inert,), {"_qualname": qualname})
            return placeholders[qualname]

    return _as_pickle_module(RestrictedUnpickler)


class _RebuildFailed(Exception):
    """Trusted unpickling could not import (``importing``) or rebuild the object ``qualname``."""

    def __init__(self, qualname: str, cause: BaseException, *, importing: bool) -> None:
        super().__init__(qualname)
        self.qualname = qualname
        self.cause = cause
        self.importing = importing


def _qualname(obj: Any) -> str:
    if not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        obj = type(obj)
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _trusted_pickle_module() -> types.ModuleType:
    """Full unpickling that says which object failed to import or rebuild.

    The pure-Python unpickler is used so that the opcodes that call into the file's code (REDUCE,
    NEWOBJ, BUILD, ...) can be wrapped: the C unpickler gives no hook there. The pickle of a
    checkpoint holds only references to its tensors' data, so it stays small and this stays fast.
    """
    import copyreg

    from torch._weights_only_unpickler import _get_allowed_globals

    torch_own = {id(obj) for obj in _get_allowed_globals().values()}
    op = pickle  # opcodes
    # where the callable (or the object being built) sits on the stack when each opcode runs
    targets: dict[bytes, Callable[[list[Any]], Any]] = {
        op.REDUCE: lambda stack: stack[-2],
        op.NEWOBJ: lambda stack: stack[-2],
        op.NEWOBJ_EX: lambda stack: stack[-3],
        op.BUILD: lambda stack: stack[-2],
    }

    def wrap(opcode: bytes, run: Callable[[Any], None]) -> Callable[[Any], None]:
        locate = targets[opcode]

        def dispatch(self: Any) -> None:
            try:
                target = locate(self.stack)
                if opcode == op.REDUCE and (target is copyreg._reconstructor or target is copyreg.__newobj__):
                    target = self.stack[-1][0]
            except (IndexError, TypeError):
                target = None
            try:
                run(self)
            except _RebuildFailed:
                raise
            except Exception as exc:
                # torch's own rebuild functions fail only on a damaged file: let the caller call it that
                if target is None or id(target) in torch_own or id(type(target)) in torch_own:
                    raise
                raise _RebuildFailed(_qualname(target), exc, importing=False) from exc

        return dispatch

    table = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    for opcode in targets:
        table[opcode[0]] = wrap(opcode, table[opcode[0]])

    class TrustedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
        dispatch = table

        def find_class(self, module: str, name: str) -> Any:
            try:
                return super().find_class(module, name)
            except Exception as exc:
                raise _RebuildFailed(f"{module}.{name}", exc, importing=True) from exc

        def load(self) -> Any:
            try:
                return super().load()
            except (_RebuildFailed, EOFError, pickle.UnpicklingError, RuntimeError):
                raise
            except Exception as exc:
                # the pure-Python unpickler meets a cut or garbled stream with struct, key or index errors
                raise pickle.UnpicklingError(f"{type(exc).__name__}: {exc}") from exc

    return _as_pickle_module(TrustedUnpickler)


def unsafe_globals(path: Path) -> list[str]:
    """List the globals (beyond tensors and plain containers) a checkpoint's pickle would import.

    Nothing is imported or run. A zip-format file (torch 1.6 and later) is read by torch's own
    ``torch.serialization.get_unsafe_globals_in_checkpoint``, which disassembles the pickle against
    the weights-only allow-list; a legacy file goes through the restricted unpickler, which records
    each global it replaces by an inert placeholder. A safetensors file holds no pickle, so it
    imports nothing.

    Returns:
        The globals' qualified names (``module.name``), sorted.
    """
    file_format = detect_format(path)
    if file_format == "safetensors":
        return []
    if file_format == "zip":
        import torch

        return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))))
    replaced: set[str] = set()
    _torch_load(path, file_format=file_format, pickle_module=_restricted_pickle_module(replaced))
    return sorted(replaced)


def _torch_load(path: Path, *, file_format: str, pickle_module: Any = None, weights_only: bool = False) -> Any:
    import torch

    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": weights_only}
    if pickle_module is not None:
        kwargs["pickle_module"] = pickle_module
    if file_format == "zip":
        kwargs["mmap"] = True
    return torch.load(path, **kwargs)


#: What a damaged file raises while it is read: a bad or cut zip, a CRC mismatch, an unexpected end
#: of data, a broken pickle stream. Failures to rebuild one of the file's objects are not among them.
_DAMAGE = (
    EOFError,
    pickle.UnpicklingError,
    RuntimeError,
    zipfile.BadZipFile,
    ValueError,
    OSError,
    KeyError,
    IndexError,
)


def rebuild_error(path: Path, failed: _RebuildFailed) -> CheckpointError:
    """The one-line error for an object that trusted unpickling could not import or rebuild here.

    Args:
        path: the checkpoint (file or folder) being read.
        failed: what failed, and why.

    Returns:
        A ``CheckpointError`` naming the object and both ways out.
    """
    cause = f"{type(failed.cause).__name__}: {first_line(failed.cause)}"
    module = failed.qualname.rsplit(".", 1)[0]
    if failed.importing:
        what = f"checkpoint {path} names {failed.qualname}, which cannot be imported here ({cause})"
        code = f"the code that wrote it (the package and version that had {module})"
    else:
        what = f"checkpoint {path} holds a {failed.qualname} that cannot be rebuilt here ({cause})"
        code = f"the code that wrote it (where {failed.qualname} can be built)"
    return CheckpointError(
        what,
        f"install {code}, or convert without --trust-checkpoint: "
        "the object then becomes an inert placeholder and nothing in the file runs",
    )


def _load_or_explain(path: Path, file_format: str, **kwargs: Any) -> Any:
    try:
        return _torch_load(path, file_format=file_format, **kwargs)
    except _RebuildFailed as failed:
        raise rebuild_error(path, failed) from None
    except _DAMAGE as exc:
        if isinstance(exc, OSError):  # the device or a permission, not damage: copying would not help
            raise CheckpointError(*read_error(path, exc, "checkpoint")) from None
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {first_line(exc)})",
            "the file was cut short while copying or uploading; copy it again",
        ) from None


def load_tiers(path: Path, file_format: str, *, trust: bool) -> tuple[Any, str, list[str]]:
    """Unpickle a torch file with the safest tier that reads it.

    Args:
        path: a file written by ``torch.save`` (zip or legacy format).
        file_format: ``zip`` or ``legacy`` (from ``detect_format``).
        trust: unpickle fully (runs code the file carries).

    Returns:
        The object, the tier that read it (``weights-only``, ``restricted`` or ``trusted``), and the
        qualified names of the globals replaced by inert placeholders.

    Raises:
        CheckpointError: the file is damaged, or (trusted) one of its objects cannot be imported or rebuilt.
    """
    replaced: set[str] = set()
    if trust:
        return _load_or_explain(path, file_format, pickle_module=_trusted_pickle_module()), "trusted", []
    try:
        return _torch_load(path, file_format=file_format, weights_only=True), "weights-only", []
    except Exception:
        obj = _load_or_explain(path, file_format, pickle_module=_restricted_pickle_module(replaced))
        return obj, "restricted", sorted(replaced)
