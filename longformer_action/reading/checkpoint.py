"""Read a checkpoint (file or folder) into one ``Checkpoint``, without running its code or reading what is not needed.

Recognises a file's format, finds its state dict and its Lightning (or Fabric) metadata, and hands
folders to ``pretrained.py`` and ``distributed.py``. A Lightning checkpoint is a pickle, unpickled
in three tiers (``unpickling.py``), safest first:

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..digests import file_sha256, in_background
from ..errors import CheckpointError
from ..filesystem import raise_read_problem
from ..text import listing
from .callbacks import ModelCheckpointState, model_checkpoint_states
from .distributed import find_layout, layout_error, read_distributed
from .formats import FABRIC, LIGHTNING_KEYS, Read, detect_format, is_tensor, load_safetensors, writer_of
from .hparams import as_mapping
from .pretrained import folder_of, read_pretrained, side_file_error, trainer_checkpoints
from .unpickling import Inert, load_tiers


@dataclass
class Checkpoint:
    """What was read from a checkpoint file.

    Attributes:
        path: the file, or the folder of a distributed checkpoint (FSDP sharded).
        state_dict: parameter name to tensor (memory-mapped where the format allows).
        file_format: ``zip``, ``legacy`` (torch < 1.6 serialization), ``safetensors``, or
            ``torch-distributed`` (a folder read with ``torch.distributed.checkpoint``); for a
            transformers folder, its weights files' format.
        writer: which writer made it: ``lightning-0.6-0.7``, ``lightning-0.8-0.9``,
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
        model_checkpoints: the state each Lightning ``ModelCheckpoint`` callback saved in the file (the monitored
            metric, its best score, the score of this file's weights; see ``callbacks``), in the Trainer's order.
    """

    path: Path
    state_dict: dict[str, Any]
    file_format: str
    writer: str
    loader: str
    lightning_version: str | None = None
    epoch: int | float | None = None
    global_step: int | None = None
    hyper_parameters: dict[str, str] = field(default_factory=dict)
    placeholders: list[str] = field(default_factory=list)
    top_level_keys: list[str] = field(default_factory=list)
    file_bytes: int = 0
    model_checkpoints: tuple[ModelCheckpointState, ...] = ()
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


def _plain(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) or value is None


def _describe(value: Any) -> str:
    if isinstance(value, Inert) or (isinstance(value, type) and issubclass(value, Inert)):
        return value._qualname  # an object the file would build, or a class or function it names
    if _plain(value):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    # a list of labels or window sizes, a dict of label ids: the values, bounded, as for a single value
    if isinstance(value, (list, tuple)) and all(_plain(v) for v in value):
        text = repr(list(value) if isinstance(value, list) else tuple(value))
    elif isinstance(value, Mapping) and all(_plain(k) and _plain(v) for k, v in value.items()):
        text = repr(dict(value))
    else:
        return type(value).__name__
    return text if len(text) <= 60 else f"{text[:57]}... ({len(value)} items)"


def _find_state_dict(obj: Any, path: Path) -> tuple[dict[str, Any], str]:
    mapping = obj if isinstance(obj, Mapping) else None
    if mapping is None:
        raise CheckpointError(
            f"checkpoint {path} holds a {_describe(obj)}, not a dict of tensors",
            "save model.state_dict() (or use Lightning's Trainer.save_checkpoint), not the model object",
        )
    if "state_dict" in mapping and isinstance(mapping["state_dict"], Mapping):
        if LIGHTNING_KEYS & set(mapping):
            return dict(mapping["state_dict"]), writer_of(mapping)[0]
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
    keys = listing(sorted(str(k) for k in mapping), 8)
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
    path = Path(path)
    raise_read_problem(path, "checkpoint", "--checkpoint", CheckpointError)
    layout = find_layout(path)
    if layout is not None:
        return _from_read(read_distributed(layout, trust=trust))
    folder = folder_of(path)
    if folder is not None:
        return _from_read(read_pretrained(folder, trust=trust))
    side = side_file_error(path)
    if side is not None:
        raise side
    if path.is_dir():
        raise _folder_error(path)
    file_format = detect_format(path)
    sha256 = in_background(lambda: file_sha256(path))
    placeholders: list[str] = []
    if file_format == "safetensors":
        obj, loader = load_safetensors(path), "safetensors"
    else:
        obj, loader, placeholders = load_tiers(path, file_format, trust=trust)
    state_dict, writer = _find_state_dict(obj, path)
    ckpt = Checkpoint(
        path=path,
        state_dict=state_dict,
        file_format=file_format,
        writer=writer,
        loader=loader,
        placeholders=placeholders,
        file_bytes=path.stat().st_size,
        _sha256=sha256,
    )
    fill_metadata(ckpt, obj)
    return ckpt


def _from_read(read: Read) -> Checkpoint:
    ckpt = Checkpoint(
        path=read.path,
        state_dict=read.state_dict,
        file_format=read.file_format,
        writer=read.writer,
        loader=read.loader,
        placeholders=read.placeholders,
        top_level_keys=read.top_level_keys,
        file_bytes=read.file_bytes,
        _sha256=read.sha256,
    )
    fill_metadata(ckpt, read.metadata)
    if read.metadata is not None and isinstance(read.metadata, Mapping):
        ckpt.top_level_keys = sorted({*ckpt.top_level_keys, "state_dict"})
    if read.hparams:
        ckpt.hparams, ckpt.hyper_parameters = dict(read.hparams), dict(read.hyper_parameters)
    if read.epoch is not None:
        ckpt.epoch = read.epoch
    if read.global_step is not None:
        ckpt.global_step = read.global_step
    return ckpt


def fill_metadata(ckpt: Checkpoint, obj: Any) -> None:
    """Set ``ckpt``'s Lightning version, progress, hyper-parameters and top-level keys from ``obj``.

    Args:
        ckpt: the checkpoint being read; its ``writer`` is already known.
        obj: the unpickled checkpoint dict (or a distributed folder's ``meta.pt``).
    """
    if not isinstance(obj, Mapping):
        return
    ckpt.top_level_keys = sorted(str(k) for k in obj)
    if ckpt.writer.startswith("lightning"):
        ckpt.lightning_version = writer_of(obj)[1]
        ckpt.model_checkpoints = tuple(model_checkpoint_states(obj, file_name=ckpt.path.name))
        ckpt.epoch = _count(obj, "epoch")
        ckpt.global_step = _count(obj, "global_step")
        hparams = as_mapping(obj.get("hyper_parameters", obj.get("hparams")))
    elif ckpt.writer == FABRIC:
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


def _folder_error(path: Path) -> CheckpointError:
    # a folder no reader takes: name what it holds instead
    layout = find_layout(path)
    if layout is not None:
        return layout_error(layout)
    saved = trainer_checkpoints(path)
    if saved:
        shown = listing([p.name for p in saved], 5)
        return CheckpointError(
            f"checkpoint {path} is a transformers Trainer's output folder (checkpoints: {shown})",
            f"pass one of its checkpoint folders: --checkpoint {saved[0]} is the latest",
        )
    inside = sorted(p.name for p in path.glob("*.ckpt"))
    if inside:
        return CheckpointError(
            f"checkpoint {path} is a folder holding {len(inside)} .ckpt {'file' if len(inside) == 1 else 'files'}: "
            f"{listing(inside, 5)}",
            f"pass one of them, e.g. --checkpoint {path / inside[0]}",
        )
    return CheckpointError(
        f"checkpoint {path} is a folder with no .ckpt file in it, and it is neither a transformers folder nor a "
        "distributed checkpoint (FSDP sharded, DeepSpeed ZeRO or XLA FSDP)",
        "pass the checkpoint file the Trainer wrote, e.g. --checkpoint lightning_logs/version_0/checkpoints/last.ckpt",
    )
