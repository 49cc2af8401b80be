"""Write the Hugging Face folder's model files: config, weights (safetensors), tokenizer, generation settings.

Tensors are streamed from the memory-mapped checkpoint to disk one at a time, cast on the way when
``--dtype`` asks for it."""

from __future__ import annotations

import contextlib
import json
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digests import file_sha256, streaming_sha256
from ..filesystem import writing
from ..mapping.keys import KeyMapping
from ..reading.base_model import BaseModel
from ..reading.checkpoint import Checkpoint
from ..registry.files import CUSTOM_HEAD_NAME, WEIGHTS_INDEX_NAME
from ..registry.tasks import Task

_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


def resolve_dtype(dtype: str, tensors: Mapping[str, Any]) -> Any:
    """The output dtype: ``keep`` is the checkpoint's own (most common floating dtype)."""
    import torch

    if dtype != "keep":
        return getattr(torch, dtype)
    floats = Counter(t.dtype for t in tensors.values() if t.is_floating_point())
    return floats.most_common(1)[0][0] if floats else torch.float32


def mapped_tensors(ckpt: Checkpoint, mapping: KeyMapping) -> dict[str, Any]:
    """Target key to source tensor (not copied, not cast); combined targets are concatenated (dim 0).

    A task's legacy keys (``Task.legacy_keys``) the checkpoint does not hold take the tensor they are
    tied to, so that older transformers read the same value.
    """
    import torch

    from ..registry.tasks import get

    tensors: dict[str, Any] = {}
    for source, target in mapping.mapped.items():
        if target in tensors:
            continue
        parts = mapping.combined.get(target)
        tensors[target] = torch.cat([ckpt.state_dict[p] for p in parts]) if parts else ckpt.state_dict[source]
    for alias, tied_to in get(mapping.task, mapping.family).legacy_keys.items():
        if alias not in tensors and tied_to in tensors:
            tensors[alias] = tensors[tied_to]
    return tensors


def target_dtype(source: Any, dtype: str) -> Any:
    """The dtype a tensor of dtype ``source`` is saved in: floating tensors take ``dtype`` unless ``keep``."""
    import torch

    if dtype == "keep" or not source.is_floating_point:
        return source
    return getattr(torch, dtype)


def cast(tensor: Any, dtype: str) -> Any:
    """Cast a floating tensor to ``dtype`` (``keep``: unchanged); others are left alone."""
    return tensor.to(target_dtype(tensor.dtype, dtype))


#: Room kept for the files written after the weights (config, model card, report, SHA256SUMS) and
#: the safetensors headers: a report lists every key, a few hundred kB for the largest models.
SMALL_FILES_BYTES = 2**20


def planned_bytes(
    tensors: Mapping[str, Any], dtype: str, *, custom_head: Mapping[str, Any] | None = None, base: BaseModel
) -> dict[str, int]:
    """What the folder will take on disk, by part, known before anything is written.

    Args:
        tensors: target key to source tensor (see ``mapped_tensors``); each is saved in ``target_dtype``.
        dtype: ``keep`` or a torch floating dtype name (``--dtype``).
        custom_head: tensors kept as they are in ``custom_head.safetensors``.
        base: the base model, whose tokenizer files (and generation config) are copied.

    Returns:
        Bytes by part, keyed by what follows a size in a sentence ("1.2 GB of weights"): the weights,
        the custom head, the files copied from the base model, and a fixed allowance for the config,
        card and report (``SMALL_FILES_BYTES``).
    """
    copied = 0
    for source in [*base.tokenizer_files, *base.extra_files]:
        with contextlib.suppress(OSError):  # the copy names the file when it fails
            copied += source.stat().st_size
    return {
        "of weights": sum(t.numel() * target_dtype(t.dtype, dtype).itemsize for t in tensors.values()),
        "of custom head": sum(t.numel() * t.element_size() for t in (custom_head or {}).values()),
        "copied from the base model": copied,
        "for the config, card and report": SMALL_FILES_BYTES,
    }


@dataclass
class FileInfo:
    """A file written into the output folder."""

    name: str
    bytes: int
    sha256: str


def file_info(path: Path, digests: Mapping[str, str]) -> FileInfo:
    digest = digests[path.name] if path.name in digests else file_sha256(path)
    return FileInfo(path.name, path.stat().st_size, digest)


@dataclass
class Written:
    """What ``write_model`` wrote.

    Attributes:
        files: every file in the folder, with sizes and SHA-256.
        tokenizer: the tokenizer's facts (``TokenizerFacts.to_dict``); ``None`` when the base has no
            tokenizer files.
        generation: the generation settings written (their source and the fields that differ from
            transformers' defaults); ``None`` when the task's class does not generate.
    """

    files: list[FileInfo]
    tokenizer: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None


def write_config(config: Any, folder: Path) -> None:
    """Write ``config.json`` with transformers, plus ``torch_dtype`` beside ``dtype`` for transformers 4.x.

    transformers 4.x reads the saved dtype from ``torch_dtype`` (``from_pretrained(torch_dtype="auto")``)
    and 5.x from ``dtype``; 5.x reads ``torch_dtype`` as well, silently.
    """
    config.save_pretrained(folder)
    path = folder / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("dtype") is not None:
        data["torch_dtype"] = data["dtype"]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_base_tokenizer(base: BaseModel, config: Any, folder: Path) -> dict[str, Any] | None:
    """Load the base's tokenizer with ``AutoTokenizer`` and save it into ``folder`` (see ``tokenization``).

    Returns:
        The tokenizer's facts, or ``None`` when the base has no tokenizer files.

    Raises:
        BaseModelError: the base's tokenizer files do not load (see ``tokenizer.load_base_tokenizer``).
    """
    from .tokenizer import load_base_tokenizer, write_tokenizer

    if not base.tokenizer_files:
        return None
    tokenizer = load_base_tokenizer(base.folder, base.tokenizer_files, config)
    with writing(folder / "tokenizer.json", several=True):
        return write_tokenizer(tokenizer, folder, config).to_dict()


def base_generation(base: BaseModel) -> Any:
    """The base model's effective generation settings (``generation.base_generation_config``)."""
    from ..registry.files import GENERATION_CONFIG_NAME
    from .generation import base_generation_config

    has_file = any(p.name == GENERATION_CONFIG_NAME for p in base.extra_files)
    return base_generation_config(base.folder if has_file else None, base.config)


def write_base_generation(base: BaseModel, task: Task | None, folder: Path) -> dict[str, Any] | None:
    """Write the base's effective generation settings when the task's class generates (LED); else ``None``."""
    from ..registry.files import GENERATION_CONFIG_NAME
    from .generation import non_default, write_generation_config

    if task is None or not task.model_class().can_generate():
        return None
    generation = base_generation(base)
    write_generation_config(generation, folder)
    from_file = any(p.name == GENERATION_CONFIG_NAME for p in base.extra_files)
    return {"source": GENERATION_CONFIG_NAME if from_file else "config.json", "settings": non_default(generation)}


def write_model(
    folder: Path,
    tensors: Mapping[str, Any],
    config: Any,
    base: BaseModel,
    *,
    dtype: str = "keep",
    max_shard_size: str | int = "5GB",
    advance: Callable[[int], None] | None = None,
) -> Written:
    """Write ``config.json``, the tokenizer, the generation settings and the weights into ``folder``.

    Args:
        folder: an empty folder (the staging folder).
        tensors: target key to source tensor (see ``mapped_tensors``).
        config: the model config (see ``load_config``); its ``architectures`` names the task's class.
        base: the resolved base model, whose tokenizer (and generation settings) are saved.
        dtype: ``keep`` or a torch floating dtype name.
        max_shard_size: largest weights file, as bytes or a string like ``"2GB"``.
        advance: called with the number of bytes written, for progress.

    Returns:
        The files written and the tokenizer's and generation settings' facts.

    Raises:
        BaseModelError: the base's tokenizer files do not load (checked first, before any weight is written).
        OutputError: a write failed (a full disk, a quota, a read-only file system ...; see
            ``filesystem.write_error``), naming the file.
    """
    import torch
    from huggingface_hub import split_torch_state_dict_into_shards

    from ..registry.tasks import by_architecture

    out_dtype = resolve_dtype(dtype, tensors)
    config.dtype = str(out_dtype).removeprefix("torch.")
    tokenizer = write_base_tokenizer(base, config, folder)
    with writing(folder / "config.json"):
        write_config(config, folder)
    with writing(folder / "generation_config.json"):
        generation = write_base_generation(base, by_architecture((config.architectures or [""])[0]), folder)

    planned = {k: torch.empty(t.shape, dtype=target_dtype(t.dtype, dtype), device="meta") for k, t in tensors.items()}
    split = split_torch_state_dict_into_shards(planned, max_shard_size=max_shard_size)
    digests = {}
    for filename, names in split.filename_to_tensors.items():
        subset = {n: tensors[n] for n in names}
        digests[filename] = _write_safetensors(
            folder / filename, subset, dtype=dtype, advance=advance, split="--max-shard-size"
        )
    if split.is_sharded:
        index = {"metadata": {**split.metadata}, "weight_map": split.tensor_to_filename}
        with writing(folder / WEIGHTS_INDEX_NAME):
            (folder / WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    files = [file_info(p, digests) for p in sorted(folder.iterdir())]
    return Written(files=files, tokenizer=tokenizer, generation=generation)


def write_custom_head(folder: Path, ckpt: Checkpoint, mapping: KeyMapping) -> str | None:
    """Keep the tensors of a head no class computes beside the model, as they are in the checkpoint.

    ``--task feature-extraction`` exports the encoder alone; the head's tensors (``KeyMapping.custom_head``)
    go to ``custom_head.safetensors`` under their checkpoint names and dtypes, so that nothing the
    module trained is lost (``safetensors.torch.load_file`` reads them back).

    Returns:
        The file's SHA-256, or ``None`` when there is no custom head.
    """
    if not mapping.custom_head:
        return None
    tensors = {key: ckpt.state_dict[key] for key in sorted(mapping.custom_head)}
    return _write_safetensors(folder / CUSTOM_HEAD_NAME, tensors, dtype="keep", advance=None)


def _write_safetensors(
    path: Path,
    tensors: Mapping[str, Any],
    *,
    dtype: str,
    advance: Callable[[int], None] | None,
    split: str | None = None,
) -> str:
    # safetensors.torch.save_file builds the whole file's bytes in memory first (a second copy of
    # every weight); this writes the same format one tensor at a time from the memory map, and
    # hashes the bytes on the way (returns the file's SHA-256).
    import torch

    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        out = target_dtype(tensor.dtype, dtype)
        nbytes = tensor.numel() * out.itemsize
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[str(out).removeprefix("torch.")],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    digest = streaming_sha256()
    with writing(path, needs=8 + len(raw) + offset, split=split), path.open("wb") as f:
        for chunk in (struct.pack("<Q", len(raw)), raw):
            f.write(chunk)
            digest.update(chunk)
        for tensor in tensors.values():
            data = cast(tensor, dtype).contiguous().reshape(-1)
            view = memoryview(data.view(torch.uint8).numpy())
            f.write(view)
            digest.update(view)
            if advance is not None:
                advance(len(view))
            del data, view
    return digest.hexdigest()
