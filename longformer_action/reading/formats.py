"""Recognise a checkpoint file's format and its writer, and read a safetensors file: the readers' primitives."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..filesystem import raise_read_problem, read_error
from ..text import first_line

#: Keys Lightning writes next to ``state_dict``; a dict with these is a Lightning checkpoint.
LIGHTNING_KEYS = {
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


SAFETENSORS_SUFFIXES = (".safetensors",)


#: ``Checkpoint.writer`` of a file written by Lightning Fabric's ``Fabric.save``.
FABRIC = "fabric"


@dataclass
class Read:
    """What a folder reader (``pretrained``, ``distributed``) found, as plain data.

    ``checkpoint.read_checkpoint`` builds the ``Checkpoint`` from it: the fields of the same names,
    then the Lightning or Fabric metadata of ``metadata`` (the unpickled ``meta.pt``), then the
    progress and hyper-parameters read here when the folder records them its own way.

    Attributes:
        sha256: returns the SHA-256 (computed in the background while the weights load).
        metadata: an unpickled checkpoint dict without its state dict, or ``None``.
    """

    path: Path
    state_dict: dict[str, Any]
    file_format: str
    writer: str
    loader: str
    placeholders: list[str]
    file_bytes: int
    sha256: Callable[[], str]
    metadata: Any = None
    top_level_keys: list[str] = field(default_factory=list)
    hparams: dict[str, Any] = field(default_factory=dict)
    hyper_parameters: dict[str, str] = field(default_factory=dict)
    epoch: int | float | None = None
    global_step: int | None = None


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a ``torch.Tensor`` (imports torch)."""
    import torch

    return isinstance(value, torch.Tensor)


def detect_format(path: Path) -> str:
    """``zip``, ``legacy`` or ``safetensors``, from the file's first bytes.

    Raises:
        CheckpointError: the path is missing (or a dangling link, or not UTF-8), unreadable, a directory,
            empty, a truncated zip, a Git LFS pointer, or not a checkpoint; a directory (see
            ``checkpoint.read_checkpoint`` for the folders it reads).
    """
    raise_read_problem(path, "checkpoint", "--checkpoint", CheckpointError)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory", "pass the checkpoint file inside it")
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
    if path.suffix in SAFETENSORS_SUFFIXES or (len(head) >= 9 and head[8:9] == b"{"):
        return "safetensors"
    if head[:1] == b"\x80":
        return "legacy"
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint (it starts with {head[:8]!r})",
        "pass the .ckpt file written by Lightning's Trainer or torch.save",
    )


def writer_of(obj: Mapping[str, Any]) -> tuple[str, str | None]:
    """Which Lightning wrote a checkpoint dict (``Checkpoint.writer``), and its version when recorded."""
    version = obj.get("pytorch-lightning_version")
    if isinstance(version, str):
        major = version.split(".")[0]
        if major == "0":
            return "lightning-0.8-0.9", version
        return "lightning-1.x-2.x", version
    if "hyper_parameters" in obj:
        return "lightning-0.8-0.9", None
    return "lightning-0.6-0.7", None


#: What wrote a checkpoint, by ``Checkpoint.writer``, for people (``inspect``, the model card).
_WRITERS = {
    FABRIC: "Lightning Fabric (fabric.save)",
    "transformers": "transformers (save_pretrained, or a Trainer's checkpoint-N)",
    "state-dict": "a bare state dict (no training metadata)",
}


def describe_writer(writer: str, lightning_version: str | None) -> str:
    """What wrote a checkpoint, for people: ``Lightning 2.4.0``, ``Lightning (0.6-0.7, version not recorded)``,
    ``Lightning Fabric (fabric.save)``, ``transformers (...)`` or ``a bare state dict (...)``."""
    if writer.startswith("lightning-"):
        generation = writer.removeprefix("lightning-")
        return (
            f"Lightning {lightning_version}" if lightning_version else f"Lightning ({generation}, version not recorded)"
        )
    return _WRITERS.get(writer, writer)


def load_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except OSError as exc:
        raise CheckpointError(*read_error(path, exc, "checkpoint")) from None
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({first_line(exc)})",
            "copy the file again, or pass the original .ckpt",
        ) from None
