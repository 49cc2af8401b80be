"""Folders that transformers writes: ``save_pretrained``'s output and a ``Trainer``'s ``checkpoint-N/``.

What is in one (transformers 4.x and 5):

- ``config.json``: the model's config;
- the weights: ``model.safetensors``, or shards ``model-0000N-of-0000M.safetensors`` listed by
  ``model.safetensors.index.json``; before transformers 5 also ``pytorch_model.bin`` (or shards listed
  by ``pytorch_model.bin.index.json``), which are pickles;
- in a Trainer's ``checkpoint-N/``, the Trainer's own files: ``optimizer.pt``, ``scheduler.pt``,
  ``rng_state.pth`` (``rng_state_<rank>.pth``), ``scaler.pt``, ``trainer_state.json`` and
  ``training_args.bin`` (a pickle of the ``TrainingArguments``).

Read here: the weights (safetensors directly; a ``.bin`` through the same safety tiers as a ``.ckpt``),
``config.json`` as the config the checkpoint records (compared with the base config; ``--base-model
hparams`` takes it), and ``trainer_state.json``'s step and epoch. The Trainer's pickles are never
opened: nothing in them is needed, and unpickling ``training_args.bin`` imports transformers' classes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..digests import folder_sha256
from ..errors import CheckpointError
from ..filesystem import read_error
from ..text import first_line
from .formats import Read, detect_format, is_tensor, load_safetensors
from .unpickling import load_tiers

#: ``Checkpoint.writer`` of a folder transformers wrote.
TRANSFORMERS = "transformers"


#: The key under which the folder's ``config.json`` sits in ``Checkpoint.hparams`` (the recorded config).
CONFIG_FILE = "config.json"


#: Weights files, safetensors first (what transformers itself prefers when a folder has both).
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


_SHARD = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


#: The Trainer's own files, and what each holds.
TRAINER_FILES = {
    "optimizer.pt": "the optimizer's state",
    "scheduler.pt": "the learning-rate scheduler's state",
    "scaler.pt": "the mixed-precision scaler's state",
    "trainer_state.json": "the Trainer's progress",
    "training_args.bin": "the TrainingArguments (a pickle)",
}


_RNG_STATE = re.compile(r"^rng_state(_\d+)?\.pth$")


_TRAINER_STATE = "trainer_state.json"


def is_pretrained_folder(folder: Path) -> bool:
    """Whether ``folder`` holds ``config.json`` and a transformers weights file (or index)."""
    return (folder / CONFIG_FILE).is_file() and any((folder / name).is_file() for name in (*WEIGHTS, *INDEXES))


def folder_of(path: Path) -> Path | None:
    """The transformers folder ``path`` is, or whose shard or index it is (a shard alone is part of a model)."""
    if path.is_dir():
        return path if is_pretrained_folder(path) else None
    if (_SHARD.match(path.name) or path.name in INDEXES) and is_pretrained_folder(path.parent):
        return path.parent
    return None


def side_file_error(path: Path) -> CheckpointError | None:
    """The error for one of the Trainer's own files passed as the checkpoint, naming what to pass instead."""
    name = path.name
    what = TRAINER_FILES.get(name) or ("the random generators' state" if _RNG_STATE.match(name) else None)
    if what is None or not is_pretrained_folder(path.parent):
        return None
    return CheckpointError(
        f"{path} is {what}, not the model: it is one of the files a transformers Trainer writes beside the weights",
        f"pass the folder itself: --checkpoint {path.parent}",
    )


def trainer_checkpoints(folder: Path) -> list[Path]:
    """The Trainer's ``checkpoint-N`` folders inside an ``output_dir``, latest (highest N) first."""
    found = [p for p in folder.glob("checkpoint-*") if p.name[11:].isdigit() and is_pretrained_folder(p)]
    return sorted(found, key=lambda p: int(p.name[11:]), reverse=True)


def _weight_files(folder: Path) -> list[Path]:
    for index_name in INDEXES:
        index = folder / index_name
        if not index.is_file():
            continue
        try:
            weight_map = _json(index)["weight_map"]
            names = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint folder {folder}: {index_name} is not a transformers index ({type(exc).__name__})",
                "pass the folder save_pretrained or the Trainer wrote, unchanged",
            ) from None
        for name in names:
            # shards are plain names in the folder: the index must not point elsewhere on the disk
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise CheckpointError(
                    f"checkpoint folder {folder}: {index_name} points at a file outside the folder ({name!r})",
                    "pass the folder save_pretrained or the Trainer wrote, unchanged",
                )
            if not (folder / name).is_file():
                raise CheckpointError(
                    f"checkpoint folder {folder} lacks {name}, which its {index_name} lists",
                    "copy the whole folder again (every shard)",
                )
        return [folder / name for name in names]
    return [next(folder / name for name in WEIGHTS if (folder / name).is_file())]


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(*read_error(path, exc, "file")) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({type(exc).__name__}: {first_line(exc, 120)})",
            "pass the folder save_pretrained or the Trainer wrote, unchanged",
        ) from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} is not a JSON object", "pass the folder save_pretrained or the Trainer wrote")
    return value


def read_pretrained(folder: Path, *, trust: bool = False) -> Read:
    """Read a transformers folder's weights, config and progress (never the Trainer's pickles).

    Args:
        folder: a folder for which ``is_pretrained_folder`` holds.
        trust: unpickle a ``pytorch_model.bin`` fully (runs code it carries).

    Returns:
        What was read, as plain data: ``path`` is the folder, ``state_dict`` the weights of every shard,
        ``hparams`` ``{"config.json": <the folder's config>}``, ``global_step`` and ``epoch`` from
        ``trainer_state.json`` when present; its SHA-256 is of the files read (``config.json``, the
        weights, their index, ``trainer_state.json``), as ``sha256sum`` lines sorted by name.

    Raises:
        CheckpointError: an index that is not one or lists a missing shard, a damaged weights file, a
            ``.bin`` that is not a state dict, or a ``config.json`` that is not JSON.
    """
    weights = _weight_files(folder)
    state_dict: dict[str, Any] = {}
    placeholders: set[str] = set()
    formats, loaders = set(), set()
    for path in weights:
        if path.suffix == ".safetensors":
            tensors, file_format, loader = load_safetensors(path), "safetensors", "safetensors"
        else:
            file_format = detect_format(path)
            tensors, loader, replaced = load_tiers(path, file_format, trust=trust)
            placeholders.update(replaced)
            if not isinstance(tensors, dict) or not all(is_tensor(v) for v in tensors.values()):
                raise CheckpointError(
                    f"{path} is not a state dict (a dict of tensors)",
                    "pass the folder save_pretrained or the Trainer wrote, unchanged",
                )
        state_dict.update(tensors)
        formats.add(file_format)
        loaders.add(loader)
    read = [folder / CONFIG_FILE, *weights, *(folder / n for n in INDEXES if (folder / n).is_file())]
    state = folder / _TRAINER_STATE
    progress = _json(state) if state.is_file() else {}
    if progress:
        read.append(state)
    read = sorted(read, key=lambda p: p.name.encode())
    config = _json(folder / CONFIG_FILE)
    step, epoch = progress.get("global_step"), progress.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool):
        epoch = int(epoch) if float(epoch).is_integer() else round(float(epoch), 2)
    else:
        epoch = None
    return Read(
        path=folder,
        state_dict=state_dict,
        file_format="+".join(sorted(formats)),
        writer=TRANSFORMERS,
        loader=max(loaders, key=("safetensors", "weights-only", "restricted", "trusted").index),
        placeholders=sorted(placeholders),
        top_level_keys=[p.name for p in read],
        file_bytes=sum(p.stat().st_size for p in read),
        sha256=folder_sha256(folder, read),
        hparams={CONFIG_FILE: config},
        hyper_parameters={CONFIG_FILE: f"{config.get('model_type', '?')} config"},
        global_step=step if isinstance(step, int) and not isinstance(step, bool) else None,
        epoch=epoch,
    )
