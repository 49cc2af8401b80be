"""Checkpoint folders written by distributed strategies: recognise them, read FSDP's into plain data.

The reader returns the consolidated weights and the folder's metadata as plain data
(``DistributedRead``); ``checkpoint.read_checkpoint`` builds the ``Checkpoint`` from it.

Lightning writes three such layouts:

- FSDP sharded (``FSDPStrategy(state_dict_type="sharded")`` of the Trainer and of Fabric, and
  ``ModelParallelStrategy``): ``.metadata`` (the index, a pickle), ``__<rank>_<n>.distcp`` (the tensor
  data) and ``meta.pt`` (everything else the Trainer saves: epoch, global step, hyper-parameters, the
  Lightning version). Read here with torch's own distributed-checkpoint reader, consolidated on CPU,
  with the same safety tiers as a ``.ckpt`` for both pickles (the index and ``meta.pt``). Only the
  model's entries are read, not the optimizer's.
- DeepSpeed ZeRO: ``latest``, ``<tag>/mp_rank_00_model_states.pt``, ``<tag>/*_optim_states.pt``,
  ``zero_to_fp32.py``. The fp32 weights are spread over the optimizer shards and only DeepSpeed's
  code reads them (unpickling everything); recognised, with the command that consolidates it.
- XLA FSDP sharded: ``checkpoint_rank-<r>-of-<n>.pth``. Recognised, with torch_xla's command.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digests import folder_sha256
from ..errors import CheckpointError
from ..filesystem import read_error
from ..text import first_line
from .formats import Read, detect_format, writer_of
from .unpickling import (
    _DAMAGE,
    _RebuildFailed,
    _restricted_pickle_module,
    _trusted_pickle_module,
    load_tiers,
    rebuild_error,
)

FSDP_SHARDED = "fsdp-sharded"


DEEPSPEED_ZERO = "deepspeed-zero"


XLA_FSDP_SHARDED = "xla-fsdp-sharded"


#: ``file_format`` of a ``Checkpoint`` read from an FSDP sharded folder.
DISTCP_FORMAT = "torch-distributed"


_INDEX = ".metadata"  # torch.distributed.checkpoint's index


_META = "meta.pt"  # Lightning's file for everything but the model and optimizer states


_XLA_SUFFIX = "_rank-*-of-*.pth"


@dataclass(frozen=True)
class Layout:
    """A distributed checkpoint folder.

    Attributes:
        kind: ``fsdp-sharded``, ``deepspeed-zero`` or ``xla-fsdp-sharded``.
        root: the folder the strategy wrote (the one to convert or consolidate).
        given: the path the user gave (the folder, or a file or folder inside it).
        tag: DeepSpeed's tag folder when the root has no ``latest`` file naming it.
    """

    kind: str
    root: Path
    given: Path
    tag: str | None = None


def _named(folder: Path) -> Path:
    # the parent of a bare relative name is ".": name the folder itself in messages and reports
    return folder if folder.name not in ("", "..") else Path(os.path.abspath(folder))


def _is_fsdp(folder: Path) -> bool:
    return (folder / _INDEX).is_file() and ((folder / _META).is_file() or any(folder.glob("*.distcp")))


def _is_deepspeed_tag(folder: Path) -> bool:
    return any(folder.glob("*model_states.pt")) or any(folder.glob("*optim_states.pt"))


def _is_deepspeed_root(folder: Path) -> bool:
    if (folder / "latest").is_file() or (folder / "zero_to_fp32.py").is_file():
        return True
    return any(_is_deepspeed_tag(child) for child in folder.iterdir() if child.is_dir())


def _deepspeed(root_or_tag: Path, given: Path) -> Layout:
    if _is_deepspeed_tag(root_or_tag) and not _is_deepspeed_root(root_or_tag):
        parent = _named(root_or_tag.parent)
        latest = parent / "latest"
        named = latest.read_text().strip() if latest.is_file() else None
        return Layout(DEEPSPEED_ZERO, parent, given, None if named == root_or_tag.name else root_or_tag.name)
    return Layout(DEEPSPEED_ZERO, root_or_tag, given)


def find_layout(path: Path) -> Layout | None:
    """Which distributed layout ``path`` is, or lies inside.

    Args:
        path: what the user passed as the checkpoint: a folder, or any file in one.

    Returns:
        The ``Layout``, or ``None`` for a path that is not part of a distributed checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = _named(path)
        if _is_fsdp(path):
            return Layout(FSDP_SHARDED, path, path)
        if any(path.glob("*" + _XLA_SUFFIX)):
            return Layout(XLA_FSDP_SHARDED, path, path)
        if _is_deepspeed_root(path) or _is_deepspeed_tag(path):
            return _deepspeed(path, path)
        return None
    if not path.is_file():
        return None
    folder, name = _named(path.parent), path.name
    if name in (_INDEX, _META) or name.endswith(".distcp"):
        return Layout(FSDP_SHARDED, folder, path) if _is_fsdp(folder) else None
    if path.match("*" + _XLA_SUFFIX):
        return Layout(XLA_FSDP_SHARDED, folder, path)
    if name.endswith(("model_states.pt", "optim_states.pt")):
        return _deepspeed(folder, path)
    if name in ("latest", "zero_to_fp32.py") and _is_deepspeed_root(folder):
        return Layout(DEEPSPEED_ZERO, folder, path)
    return None


def _consolidated_name(root: Path) -> Path:
    return root.parent / f"{Path(root.name).stem}-consolidated.ckpt"


def layout_error(layout: Layout) -> CheckpointError:
    """The one-line error for a layout that is not read here, with the command that consolidates it.

    Args:
        layout: from ``find_layout``.

    Returns:
        A ``CheckpointError`` that names the layout and the exact command for its folder.
    """
    out = _consolidated_name(layout.root)
    if layout.kind == DEEPSPEED_ZERO:
        tag = f", tag={json.dumps(layout.tag)}" if layout.tag else ""
        code = (
            "from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict as c; "
            f"c({json.dumps(str(layout.root))}, {json.dumps(str(out))}{tag})"
        )
        installed = importlib.util.find_spec("deepspeed") is not None
        needs = "" if installed else "pip install deepspeed, then "
        return CheckpointError(
            f"checkpoint {layout.given} is (in) a DeepSpeed ZeRO checkpoint folder, {layout.root}: "
            "its fp32 weights are spread over the optimizer shards, which only DeepSpeed's own reader "
            "consolidates (it unpickles the folder fully)",
            f"if you trust the folder, {needs}run python -c {shlex.quote(code)} and pass --checkpoint "
            f"{shlex.quote(str(out))}",
        )
    if layout.kind == XLA_FSDP_SHARDED:
        shard = sorted(layout.root.glob("*" + _XLA_SUFFIX))[0].name
        prefix = layout.root / shard.split("_rank-", 1)[0]
        return CheckpointError(
            f"checkpoint {layout.given} is (in) an XLA FSDP sharded checkpoint folder, {layout.root}",
            "consolidate it with torch_xla: python -m torch_xla.distributed.fsdp.consolidate_sharded_ckpts "
            f"--ckpt_prefix {shlex.quote(str(prefix))} --ckpt_suffix {shlex.quote(_XLA_SUFFIX)} "
            f"--save_path {shlex.quote(str(out))}, then pass --checkpoint {shlex.quote(str(out))}",
        )
    return CheckpointError(
        f"{layout.given} is (in) an FSDP sharded checkpoint folder, {layout.root}, not a single file",
        f"pass the folder itself: --checkpoint {shlex.quote(str(layout.root))}",
    )


def read_distributed(layout: Layout, *, trust: bool = False) -> Read:
    """Read a distributed checkpoint folder's model weights and metadata, or explain how to consolidate it.

    Args:
        layout: from ``find_layout``.
        trust: unpickle the folder's pickles fully (runs code they carry).

    Returns:
        What was read, as plain data (FSDP sharded folders): ``path`` is the folder, ``state_dict``
        the consolidated model weights, ``metadata`` the unpickled ``meta.pt``.

    Raises:
        CheckpointError: a layout that is not read here (with its consolidation command), a damaged
            folder, or (trusted) an object that cannot be imported or rebuilt.
    """
    if layout.kind != FSDP_SHARDED:
        raise layout_error(layout)
    return _read_fsdp(layout.root, trust=trust)


def _index_globals() -> dict[str, Any]:
    from torch.distributed.checkpoint import filesystem, metadata

    names = [
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    ]
    allowed = {f"{metadata.__name__}.{n}": getattr(metadata, n) for n in names if hasattr(metadata, n)}
    allowed[f"{filesystem.__name__}._StorageInfo"] = filesystem._StorageInfo
    return allowed


def _damaged(root: Path, what: str, exc: BaseException) -> CheckpointError:
    if isinstance(exc, OSError):  # the device or a permission, not damage: copying would not help
        failed = Path(os.fsdecode(exc.filename)) if isinstance(exc.filename, (str, bytes)) else root
        return CheckpointError(*read_error(failed, exc, "checkpoint file"))
    return CheckpointError(
        f"checkpoint folder {root}: {what} is truncated or corrupt ({type(exc).__name__}: {first_line(exc)})",
        "the folder was cut short while copying or uploading; copy the whole folder again",
    )


def _read_index(root: Path, *, trust: bool) -> Any:
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import Metadata

    replaced: set[str] = set()
    # its one expected outsider is the StorageMeta's checkpoint path (a PosixPath), unused here
    module = _trusted_pickle_module() if trust else _restricted_pickle_module(replaced, _index_globals())
    try:
        with (root / _INDEX).open("rb") as f:
            index = module.load(f)
    except _RebuildFailed as failed:
        raise rebuild_error(root / _INDEX, failed) from None
    except _DAMAGE as exc:
        raise _damaged(root, f"its index {_INDEX}", exc) from None
    if not isinstance(index, Metadata) or not isinstance(index.storage_data, dict):
        raise CheckpointError(
            f"checkpoint folder {root}: {_INDEX} is not a torch.distributed.checkpoint index",
            "pass the folder that Lightning's FSDP strategy wrote, unchanged",
        )
    for info in index.storage_data.values():
        name = getattr(info, "relative_path", None) if isinstance(info, _StorageInfo) else None
        # data files are plain names in the folder: the index must not point elsewhere on the disk
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or name == _INDEX:
            raise CheckpointError(
                f"checkpoint folder {root}: {_INDEX} points at data outside the folder ({name!r})",
                "pass the folder that Lightning's FSDP strategy wrote, unchanged",
            )
        if not (root / name).is_file():
            raise CheckpointError(
                f"checkpoint folder {root} lacks {name}, which its index lists",
                "copy the whole folder again (every .distcp file)",
            )
    return index


def _model_group(root: Path, index: Any) -> str:
    groups = sorted({str(path[0]) for path in (index.planner_data or {}).values() if path})
    if "model" in groups:
        return "model"
    candidates = [g for g in groups if not g.startswith("optimizer")]
    if len(candidates) == 1:
        return candidates[0]
    raise CheckpointError(
        f"checkpoint folder {root} has no 'model' entry (entries: {', '.join(groups) or 'none'})",
        "pass the folder written by Lightning's FSDP strategy (Trainer.save_checkpoint or Fabric.save "
        "with a 'model' entry)",
    )


def _load_object(data: io.BytesIO, *, trust: bool, replaced: set[str]) -> Any:
    import torch

    if trust:
        return torch.load(data, map_location="cpu", weights_only=False, pickle_module=_trusted_pickle_module())
    try:
        return torch.load(data, map_location="cpu", weights_only=True)
    except Exception:
        data.seek(0)
        return torch.load(
            data, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle_module(replaced)
        )


def _load_model_state(root: Path, index: Any, group: str, *, trust: bool, replaced: set[str]) -> dict[str, Any]:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    class Reader(FileSystemReader):
        # the index was already read with the safety tiers; torch's reader would pickle.load it
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            return index

    class Planner(_EmptyStateDictLoadPlanner):
        # torch's planner loads non-tensor entries with weights_only=False; these go through the tiers
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            obj = _load_object(value, trust=trust, replaced=replaced)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
            else:
                self.state_dict[read_item.dest_index.fqn] = obj

    loaded: dict[str, Any] = {}
    _load_state_dict(loaded, storage_reader=Reader(root), planner=Planner(keys={group}), no_dist=True)
    state = loaded.get(group)
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint folder {root}: its '{group}' entry is a {type(state).__name__}, not a state dict",
            "pass the folder written by Lightning's FSDP strategy",
        )
    return state


def _read_fsdp(root: Path, *, trust: bool) -> Read:
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix().encode())
    sha256 = folder_sha256(root, files)
    meta: Any = None
    loader = "trusted" if trust else "weights-only"
    placeholders: set[str] = set()
    if (root / _META).is_file():
        meta, loader, replaced = load_tiers(root / _META, detect_format(root / _META), trust=trust)
        placeholders.update(replaced)
    index = _read_index(root, trust=trust)
    group = _model_group(root, index)
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        state_dict = _load_model_state(root, index, group, trust=trust, replaced=placeholders)
    except CheckpointException as wrapped:
        # torch's reader gathers each rank's failure, with its traceback, into one BaseException
        failures = [pair[0] if isinstance(pair, tuple) else pair for pair in wrapped.failures.values()]
        for exc in failures:
            if isinstance(exc, _RebuildFailed):
                raise rebuild_error(root, exc) from None
        for exc in failures:
            if isinstance(exc, CheckpointError):
                raise exc from None
        raise _damaged(root, "its shard data (.distcp)", failures[0] if failures else wrapped) from None
    except _RebuildFailed as failed:
        raise rebuild_error(root, failed) from None
    except (*_DAMAGE, AssertionError) as exc:
        raise _damaged(root, "its shard data (.distcp)", exc) from None
    is_lightning = isinstance(meta, dict) and ("pytorch-lightning_version" in meta or "global_step" in meta)
    return Read(
        path=root,
        state_dict=state_dict,
        file_format=DISTCP_FORMAT,
        writer=writer_of(meta)[0] if is_lightning else "state-dict",
        loader=loader,
        placeholders=sorted(placeholders),
        file_bytes=sum(p.stat().st_size for p in files),
        sha256=sha256,
        metadata=meta if isinstance(meta, dict) else None,
    )
