"""Read a checkpoint without running any of its code, and without reading what is not needed.

A Lightning checkpoint is a pickle. Three tiers, safest first:

1. torch's weights-only loader (tensors and plain containers only);
2. where that refuses (hyper-parameters holding ``Namespace``, ``Path``, ``AttributeDict``,
   OmegaConf containers, or anything else), a restricted unpickler: the same allow-list of
   globals, and every other global replaced by an inert placeholder that records its arguments
   and runs nothing;
3. full unpickling, only when the user says ``--trust-checkpoint``. A failure there to import or
   rebuild one of the file's objects (a class from a package that is not installed, a
   ``WindowsPath`` on Linux) is told apart from damage to the file: it names the object.

Zip-format files (torch 1.6 and later) are memory-mapped, so tensors outside ``state_dict``
(optimizer moments, about 2x the weights) are never read. Legacy files are read whole.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import types
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .filesystem import raise_read_problem, read_error

#: Keys Lightning writes next to ``state_dict``; a dict with these is a Lightning checkpoint.
_LIGHTNING_KEYS = {
    "epoch",
    "global_step",
    "pytorch-lightning_version",
    "optimizer_states",
    "lr_schedulers",
    "hyper_parameters",
    "hparams",
    "checkpoint_callback_best",
    "loops",
    "callbacks",
}

_SAFETENSORS_SUFFIXES = (".safetensors",)

#: ``Checkpoint.generation`` of a file written by Lightning Fabric's ``Fabric.save``.
FABRIC = "fabric"


@dataclass
class Checkpoint:
    """What was read from a checkpoint file.

    Attributes:
        path: the file, or the folder of a distributed checkpoint (FSDP sharded).
        state_dict: parameter name to tensor (memory-mapped where the format allows).
        file_format: ``zip``, ``legacy`` (torch < 1.6 serialization), ``safetensors``, or
            ``torch-distributed`` (a folder read with ``torch.distributed.checkpoint``); for a
            transformers folder, its weights files' format.
        generation: which writer made it: ``lightning-0.6-0.7``, ``lightning-0.8-0.9``,
            ``lightning-1.x-2.x``, ``fabric`` (Lightning Fabric's ``Fabric.save``: the state dict under
            ``model`` beside the user's own entries), ``transformers`` (a ``save_pretrained`` or Trainer
            folder), or ``state-dict`` for a bare state dict.
        loader: ``weights-only``, ``restricted`` or ``trusted``: the tier that read it.
        lightning_version: ``pytorch-lightning_version`` when present.
        epoch, global_step: training progress when present (a Trainer's epoch may be fractional).
        hyper_parameters: names to a short description of each value's type.
        hparams: the hyper-parameters themselves (inert placeholders where objects were not built).
        placeholders: qualified names of globals that were replaced by inert placeholders.
        top_level_keys: the keys of the checkpoint dict.
        file_bytes: size of the file (of all the folder's files).
    """

    path: Path
    state_dict: dict[str, Any]
    file_format: str
    generation: str
    loader: str
    lightning_version: str | None = None
    epoch: int | float | None = None
    global_step: int | None = None
    hyper_parameters: dict[str, str] = field(default_factory=dict)
    placeholders: list[str] = field(default_factory=list)
    top_level_keys: list[str] = field(default_factory=list)
    file_bytes: int = 0
    hparams: dict[str, Any] = field(default_factory=dict, repr=False)
    _sha256: Callable[[], str] | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        """SHA-256 of the file (computed in the background while the file is loaded).

        For a folder: of ``sha256sum``'s lines for its files, sorted by name.
        """
        assert self._sha256 is not None
        return self._sha256()

    def weight_bytes(self) -> int:
        """Bytes of tensor data in ``state_dict`` (each storage counted once)."""
        seen: dict[tuple[int, int], int] = {}
        for t in self.state_dict.values():
            if is_tensor(t):
                seen[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = t.untyped_storage().nbytes()
        return sum(seen.values())


def is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


# --- the restricted unpickler -------------------------------------------------------------------


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

    Nothing is imported or run: the pickle opcodes are read, not executed. A safetensors file holds
    no pickle, so it imports nothing.
    """
    file_format = detect_format(path)
    if file_format == "safetensors":
        return []
    replaced: set[str] = set()
    _torch_load(path, file_format=file_format, pickle_module=_restricted_pickle_module(replaced))
    return sorted(replaced)


# --- reading ------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """``zip``, ``legacy`` or ``safetensors``, from the file's first bytes.

    Raises:
        CheckpointError: the path is missing (or a dangling link, or not UTF-8), unreadable, a directory,
            empty, a truncated zip, a Git LFS pointer, or not a checkpoint.
    """
    raise_read_problem(path, "checkpoint", "--checkpoint", CheckpointError)
    if path.is_dir():
        from .distributed import find_layout, layout_error

        layout = find_layout(path)
        if layout is not None:
            raise layout_error(layout)
        from .pretrained import trainer_checkpoints

        saved = trainer_checkpoints(path)
        if saved:
            shown = ", ".join(p.name for p in saved[:5])
            raise CheckpointError(
                f"checkpoint {path} is a transformers Trainer's output folder (checkpoints: {shown})",
                f"pass one of its checkpoint folders: --checkpoint {saved[0]} is the latest",
            )
        inside = sorted(p.name for p in path.glob("*.ckpt"))
        if inside:
            raise CheckpointError(
                f"checkpoint {path} is a directory", f"pass the .ckpt file inside it: {', '.join(inside[:5])}"
            )
        raise CheckpointError(
            f"checkpoint {path} is a directory",
            "pass the .ckpt file inside it; it holds none, nor a distributed checkpoint "
            "(FSDP sharded, DeepSpeed ZeRO or XLA FSDP): pass the file the Trainer wrote",
        )
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes)", "the upload or copy was interrupted; copy it again"
        )
    with path.open("rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path):
        return "zip"
    if head[:2] == b"PK":
        raise CheckpointError(
            f"checkpoint {path} is a truncated or corrupt zip archive",
            "the file was cut short while copying or uploading; copy it again",
        )
    if path.suffix in _SAFETENSORS_SUFFIXES or (len(head) >= 9 and head[8:9] == b"{"):
        return "safetensors"
    if head[:1] == b"\x80":
        return "legacy"
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint (it starts with {head[:8]!r})",
        "pass the .ckpt file written by Lightning's Trainer or torch.save",
    )


def _torch_load(path: Path, *, file_format: str, pickle_module: Any = None, weights_only: bool = False) -> Any:
    import torch

    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": weights_only}
    if pickle_module is not None:
        kwargs["pickle_module"] = pickle_module
    if file_format == "zip":
        kwargs["mmap"] = True
    return torch.load(path, **kwargs)


def in_background(compute: Callable[[], str]) -> Callable[[], str]:
    """Start ``compute`` in a daemon thread now; the returned function waits for its result."""
    result: dict[str, str] = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", compute()), name="sha256", daemon=True)
    thread.start()

    def get() -> str:
        thread.join()
        return result["value"]

    return get


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _describe(value: Any) -> str:
    if isinstance(value, Inert) or (isinstance(value, type) and issubclass(value, Inert)):
        return value._qualname  # an object the file would build, or a class or function it names
    if isinstance(value, (bool, int, float, str)) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__


def as_mapping(value: Any) -> Mapping[Any, Any] | None:
    """A mapping view of a hyper-parameter value: a dict, an inert placeholder's items, an object's ``vars``."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, Inert):
        return value.inert_items()
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return vars(value)
    return None


def _generation(obj: Mapping[str, Any]) -> tuple[str, str | None]:
    version = obj.get("pytorch-lightning_version")
    if isinstance(version, str):
        major = version.split(".")[0]
        if major == "0":
            return "lightning-0.8-0.9", version
        return "lightning-1.x-2.x", version
    if "hyper_parameters" in obj:
        return "lightning-0.8-0.9", None
    return "lightning-0.6-0.7", None


def _find_state_dict(obj: Any, path: Path) -> tuple[dict[str, Any], str]:
    mapping = obj if isinstance(obj, Mapping) else None
    if mapping is None:
        raise CheckpointError(
            f"checkpoint {path} holds a {_describe(obj)}, not a dict of tensors",
            "save model.state_dict() (or use Lightning's Trainer.save_checkpoint), not the model object",
        )
    if "state_dict" in mapping and isinstance(mapping["state_dict"], Mapping):
        if _LIGHTNING_KEYS & set(mapping):
            return dict(mapping["state_dict"]), _generation(mapping)[0]
        return dict(mapping["state_dict"]), "state-dict"
    if mapping and all(is_tensor(v) for v in mapping.values()):
        return dict(mapping), "state-dict"
    # Fabric.save({"model": model, "optimizer": optimizer, "iteration": n, ...}) stores each module's state
    # dict under its own name: a mapping of tensors beside other entries. With several (a model and its
    # EMA), each one's keys are prefixed with its name, and --copy picks one.
    held = [k for k, v in mapping.items() if isinstance(v, Mapping) and v and all(is_tensor(t) for t in v.values())]
    if len(held) == 1:
        return dict(mapping[held[0]]), FABRIC
    if held:
        return {f"{k}.{name}": t for k in held for name, t in mapping[k].items()}, FABRIC
    keys = ", ".join(sorted(str(k) for k in mapping)[:8])
    raise CheckpointError(
        f"checkpoint {path} has no 'state_dict', no entry that is a state dict (as Fabric.save writes 'model'), and "
        f"is not a bare state dict (top-level keys: {keys})",
        "pass a Lightning .ckpt file, a Fabric.save file with the model's state dict, or a "
        "torch.save(model.state_dict()) file",
    )


def read_checkpoint(path: Path, *, trust: bool = False) -> Checkpoint:
    """Read a checkpoint's ``state_dict`` and metadata without running code from it.

    Args:
        path: a Lightning ``.ckpt``, a ``Fabric.save`` file, a ``torch.save``d state dict, a
            ``.safetensors`` file, a distributed checkpoint folder (or any file in one; see
            ``distributed``), or a folder transformers wrote (``save_pretrained``, a Trainer's
            ``checkpoint-N``; or a shard of one; see ``pretrained``).
        trust: unpickle everything (runs code the file carries). Only for files the user trusts.

    Returns:
        The ``Checkpoint`` with memory-mapped tensors where the format allows.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a checkpoint, or holds no state
            dict; a distributed layout that must be consolidated first; one of a Trainer's own files
            (``optimizer.pt``, ``training_args.bin`` ...); with ``trust``, an object the file names
            that cannot be imported or rebuilt here.
    """
    from .distributed import find_layout, read_distributed
    from .pretrained import folder_of, read_pretrained, side_file_error

    path = Path(path)
    raise_read_problem(path, "checkpoint", "--checkpoint", CheckpointError)
    layout = find_layout(path)
    if layout is not None:
        return read_distributed(layout, trust=trust)
    folder = folder_of(path)
    if folder is not None:
        return read_pretrained(folder, trust=trust)
    side = side_file_error(path)
    if side is not None:
        raise side
    file_format = detect_format(path)
    sha256 = in_background(lambda: file_sha256(path))
    placeholders: list[str] = []
    if file_format == "safetensors":
        obj, loader = _load_safetensors(path), "safetensors"
    else:
        obj, loader, placeholders = load_tiers(path, file_format, trust=trust)
    state_dict, generation = _find_state_dict(obj, path)
    ckpt = Checkpoint(
        path=path,
        state_dict=state_dict,
        file_format=file_format,
        generation=generation,
        loader=loader,
        placeholders=placeholders,
        file_bytes=path.stat().st_size,
        _sha256=sha256,
    )
    fill_metadata(ckpt, obj)
    return ckpt


def fill_metadata(ckpt: Checkpoint, obj: Any) -> None:
    """Set ``ckpt``'s Lightning version, progress, hyper-parameters and top-level keys from ``obj``.

    Args:
        ckpt: the checkpoint being read; its ``generation`` is already known.
        obj: the unpickled checkpoint dict (or a distributed folder's ``meta.pt``).
    """
    if not isinstance(obj, Mapping):
        return
    ckpt.top_level_keys = sorted(str(k) for k in obj)
    if ckpt.generation.startswith("lightning"):
        ckpt.lightning_version = _generation(obj)[1]
        ckpt.epoch = _count(obj, "epoch")
        ckpt.global_step = _count(obj, "global_step")
        hparams = as_mapping(obj.get("hyper_parameters", obj.get("hparams")))
    elif ckpt.generation == FABRIC:
        # Fabric records nothing of its own: the user's entries, named as Fabric's examples name them
        ckpt.epoch = _count(obj, "epoch")
        ckpt.global_step = _count(obj, "global_step", "step", "iteration")
        hparams = as_mapping(obj.get("hparams", obj.get("hyper_parameters")))
    else:
        return
    if hparams is not None:
        ckpt.hyper_parameters = {str(k): _describe(v) for k, v in hparams.items()}
        ckpt.hparams = {str(k): v for k, v in hparams.items()}


def _count(obj: Mapping[str, Any], *names: str) -> int | None:
    found = (obj.get(name) for name in names)
    return next((v for v in found if isinstance(v, int) and not isinstance(v, bool)), None)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def rebuild_error(path: Path, failed: _RebuildFailed) -> CheckpointError:
    """The one-line error for an object that trusted unpickling could not import or rebuild here.

    Args:
        path: the checkpoint (file or folder) being read.
        failed: what failed, and why.

    Returns:
        A ``CheckpointError`` naming the object and both ways out.
    """
    cause = f"{type(failed.cause).__name__}: {_first_line(failed.cause)}"
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
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)})",
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


def _load_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except OSError as exc:
        raise CheckpointError(*read_error(path, exc, "checkpoint")) from None
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({str(exc).splitlines()[0][:160]})",
            "copy the file again, or pass the original .ckpt",
        ) from None
