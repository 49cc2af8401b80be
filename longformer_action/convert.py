"""Build the Hugging Face folder: config, weights (safetensors), tokenizer files.

The target model is only ever built on the ``meta`` device (to learn the expected keys and shapes):
no random weights are allocated, and no base weights are read. Tensors are streamed from the
memory-mapped checkpoint to disk one at a time, cast on the way when ``--dtype`` asks for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base_model import BaseModel
from .checkpoint import Checkpoint, is_tensor
from .errors import BaseModelError, MappingError, OutputError
from .filesystem import writing
from .mapping import KeyMapping
from .tasks import FAMILIES, Task, family_of_model_type

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
#: The tensors of a head no transformers class computes, under their checkpoint names (feature-extraction).
CUSTOM_HEAD_NAME = "custom_head.safetensors"

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


def load_config(
    base: BaseModel,
    task: Task,
    *,
    num_labels: int | None = None,
    labels: Sequence[str] | None = None,
    problem_type: str | None = None,
) -> Any:
    """The base model's config (``LongformerConfig`` or ``LEDConfig``, by the task's family), set up for ``task``.

    Args:
        base: the resolved base model.
        task: the registry's task; its class becomes ``architectures``.
        num_labels: the head's number of outputs (``config.num_labels``), when the class reads it.
        labels: label names in output order (``id2label`` and ``label2id``).
        problem_type: ``config.problem_type`` (text classification).

    Raises:
        BaseModelError: the base config is of the other family (an LED checkpoint with a Longformer
            config, or the reverse).
    """
    family = FAMILIES[task.family]
    given = base.config.get("model_type")
    if given != family.model_type:
        other = family_of_model_type(given)
        raise BaseModelError(
            f"the checkpoint is {family.a()} model ({task.architecture}) but --base-model {base.spec} is "
            f"{other.a() if other else repr(given)} config (model_type '{given}')",
            f"pass --base-model with the {family.short} config it was trained from, such as "
            f"{' or '.join(hub_id for _, hub_id in family.default_bases)}",
        )
    config = family.config_cls().from_dict(dict(base.config))
    config.architectures = [task.architecture]
    if num_labels is not None:
        config.num_labels = num_labels
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    if problem_type:
        config.problem_type = problem_type
    return config


def expected_shapes(task: Task, config: Any, *, pooler: bool = True) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the task's class built from ``config`` on the meta device (no memory).

    ``pooler`` matters only for a class that keeps the pooler when present (``LongformerModel``).

    Raises:
        BaseModelError: the class refuses the config (an odd ``attention_window``, or a list of
            windows whose length is not the number of encoder layers).
    """
    import torch

    cls = task.model_class()
    try:
        with torch.device("meta"):
            model = cls(config, add_pooling_layer=pooler) if task.pooler is None else cls(config)
    except (ValueError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        family = FAMILIES[task.family]
        raise BaseModelError(
            f"the base config does not build {task.architecture} (attention_window "
            f"{family.value(config, 'attention_window')}, {family.value(config, 'layers')} encoder layers): {first}",
            "pass --base-model with the config the model was trained from (an even attention_window, one per layer)",
        ) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_tensors(ckpt: Checkpoint) -> None:
    """Refuse a state dict whose values are not all tensors.

    Raises:
        MappingError: naming the entries and what they hold.
    """
    not_tensors = [k for k, v in ckpt.state_dict.items() if not is_tensor(v)]
    if not_tensors:
        kinds = sorted({repr(ckpt.state_dict[k]) for k in not_tensors})[:3]
        raise MappingError(
            f"state dict entries {not_tensors[:4]} are not tensors ({', '.join(kinds)})",
            "re-save the state dict with plain tensors, or pass --trust-checkpoint if you trust the file",
        )


def tie_weights(ckpt: Checkpoint, mapping: KeyMapping, task: Task, config: Any) -> None:
    """Save tied keys (``Task.tied``) once when the checkpoint's copies are equal; else follow ``Task.tie_policy``.

    transformers ties ``lm_head.decoder`` to the word embeddings when ``tie_word_embeddings`` is set;
    a checkpoint whose decoder differs from its embeddings computed something else. Under ``untie``
    (masked LM) its folder is saved with ``tie_word_embeddings: false`` and every tensor, never
    silently tied. Under ``refuse`` (LED, whose embeddings are one tensor in every class) it is an error.

    Raises:
        MappingError: copies differ and the task's policy is ``refuse`` (names the keys and the difference).
    """
    import torch

    sources = {t: s for s, t in mapping.mapped.items()}
    pairs = [(target, tied_to) for target, tied_to in task.tied.items() if target in sources and tied_to in sources]
    differ = []  # the same facts, named by the checkpoint's keys
    for target, tied_to in pairs:
        mine, theirs = ckpt.state_dict[sources[target]], ckpt.state_dict[sources[tied_to]]
        if mine.shape != theirs.shape:
            mapping.untied[target] = f"shape {list(mine.shape)} differs from '{tied_to}' {list(theirs.shape)}"
            differ.append(f"'{sources[target]}' {list(mine.shape)} vs '{sources[tied_to]}' {list(theirs.shape)}")
        elif not torch.equal(mine, theirs):
            diff = (mine.double() - theirs.double()).abs().max().item()
            mapping.untied[target] = f"differs from '{tied_to}' (max abs diff {diff:.3g})"
            differ.append(f"'{sources[target]}' differs from '{sources[tied_to]}' (max abs diff {diff:.3g})")
    if differ and task.tie_policy == "refuse":
        raise MappingError(
            f"the checkpoint's copies of tied weights differ: {'; '.join(differ)}; {task.architecture} ties them "
            "(one tensor), so the folder would not compute what the checkpoint computed",
            "convert the checkpoint of a module whose embeddings and LM head are one tensor (as transformers ties "
            "them), or re-tie them before saving",
        )
    if mapping.untied:
        config.tie_word_embeddings = False
        return
    for target, tied_to in pairs:
        if target in task.legacy_keys:
            continue  # equal, and written anyway: older transformers read the tied value through it
        mapping.dropped[sources[target]] = f"tied to '{tied_to}' (equal values); transformers ties them on loading"
        del mapping.mapped[sources[target]]


#: Hyper-parameter names that hold label names, as public LightningModules call them.
LABEL_HPARAMS = ("id2label", "label2id", "labels", "label_list", "label_names", "classes")


def labels_from_hparams(hparams: Mapping[str, Any]) -> tuple[list[str], str] | None:
    """Label names from the hyper-parameters, and where they were found; ``None`` when absent.

    Looks at every level, shallowest first, whatever wraps it (``hparams.levels``: an ``args``
    Namespace, a config dict or object, a LightningCLI argument's ``init_args``, or the inert
    placeholder that stands in for either), for ``id2label`` (index to name), ``label2id`` (name to
    index) or a list of names (``labels``, ``label_list``, ``label_names``, ``classes``).
    """
    from . import hparams as hparams_walk
    from .checkpoint import as_mapping

    for level in hparams_walk.levels(hparams):
        for name in LABEL_HPARAMS:
            value = level.values.get(name)
            found = _label_list(name, as_mapping(value) if not isinstance(value, (list, tuple)) else value)
            if found:
                where = f"{level.path}.{name}" if level.path else name
                return found, f"hyper-parameter '{where}'"
    return None


def _label_list(name: str, value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    if isinstance(value, Mapping) and value:
        try:
            pairs = (
                sorted((int(k), str(v)) for k, v in value.items())
                if name == "id2label"
                else sorted((int(v), str(k)) for k, v in value.items())
            )
        except (TypeError, ValueError):
            return None
        if [i for i, _ in pairs] == list(range(len(pairs))):
            return [n for _, n in pairs]
    return None


def resolve_labels(
    task: Task, num_labels: int | None, given: Sequence[str] | None, hparams: Mapping[str, Any]
) -> tuple[list[str] | None, str]:
    """The label names (``None``: transformers' ``LABEL_0`` ...) and where they came from.

    Raises:
        MappingError: ``--labels`` for a task without labels, or a count that disagrees with the head.
    """
    if not task.labels:
        if given:
            raise MappingError(f"--labels was given, but {task.name} has no labels", "leave --labels out")
        return None, "none"
    found = (list(given), "--labels") if given else labels_from_hparams(hparams)
    if found is None:
        return None, "none (transformers' LABEL_0, LABEL_1, ...)"
    names, source = found
    if len(names) != num_labels:
        fix = "pass --labels with one name per output" if source == "--labels" else "pass --labels to override it"
        raise MappingError(f"{source} names {len(names)} labels but the head has {num_labels} outputs", fix)
    if len(set(names)) != len(names):
        raise MappingError(f"{source} names a label twice ({', '.join(names)})", "pass --labels with distinct names")
    return names, source


def resolve_problem_type(task: Task, given: str | None, hparams: Mapping[str, Any]) -> tuple[str | None, str]:
    """``config.problem_type`` and where it came from: ``--problem-type``, else the hyper-parameters.

    A multi-label classifier whose hyper-parameters say ``multi_label_classification`` is served
    with a sigmoid by transformers' pipelines only when its config says so.

    Raises:
        MappingError: ``--problem-type`` disagrees with the ``problem_type`` the hyper-parameters
            record (naming both).
    """
    from .selection import recorded_problem_type

    if not task.problem_type:
        return None, "none"
    recorded = recorded_problem_type(hparams)
    if given and recorded and recorded[0] != given:
        raise MappingError(
            f"--problem-type {given} disagrees with {recorded[1]}, which records problem_type '{recorded[0]}'",
            f"pass --problem-type {recorded[0]} (what the module trained with), or leave --problem-type out",
        )
    if given:
        return given, "--problem-type"
    if recorded:
        return recorded
    return None, "none"


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

    from .tasks import get

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
    if path.name in digests:
        digest = digests[path.name]
    else:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
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
        BaseModelError: the base's tokenizer files do not load (see ``tokenization.load_base_tokenizer``).
    """
    from .tokenization import load_base_tokenizer, write_tokenizer

    if not base.tokenizer_files:
        return None
    tokenizer = load_base_tokenizer(base.folder, base.tokenizer_files, config)
    with writing(folder / "tokenizer.json", several=True):
        return write_tokenizer(tokenizer, folder, config).to_dict()


def base_generation(base: BaseModel) -> Any:
    """The base model's effective generation settings (``generation.base_generation_config``)."""
    from .generation import GENERATION_CONFIG_NAME, base_generation_config

    has_file = any(p.name == GENERATION_CONFIG_NAME for p in base.extra_files)
    return base_generation_config(base.folder if has_file else None, base.config)


def write_base_generation(base: BaseModel, task: Task | None, folder: Path) -> dict[str, Any] | None:
    """Write the base's effective generation settings when the task's class generates (LED); else ``None``."""
    from .generation import GENERATION_CONFIG_NAME, non_default, write_generation_config

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

    from .tasks import by_architecture

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
    digest = hashlib.sha256()
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


#: The checksum file in the output folder, in ``sha256sum`` format (``sha256sum -c SHA256SUMS`` checks it).
CHECKSUMS_NAME = "SHA256SUMS"


def write_checksums(folder: Path) -> Path:
    """Write ``SHA256SUMS`` into ``folder``: one ``<sha256>  <path>`` line per other file, sorted by path.

    Call it last, once every other file is in place, so that it covers all of them (the model card and
    the report included); a downstream job runs ``sha256sum -c SHA256SUMS`` in the folder.

    Args:
        folder: the finished folder; files in subfolders are listed by their relative POSIX path.

    Returns:
        The path of the written file.

    Raises:
        OutputError: a file name that ``sha256sum`` would need to escape (a backslash or a line break), or
            the write failed (see ``filesystem.write_error``).
    """
    target = folder / CHECKSUMS_NAME
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != target):
        name = path.relative_to(folder).as_posix()
        if any(c in name for c in "\\\n\r"):
            raise OutputError(f"file name {name!r} cannot be listed in {CHECKSUMS_NAME}", "rename the file")
        with path.open("rb") as f:
            lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {name}\n")
    with writing(target):
        target.write_text("".join(lines), encoding="utf-8")
    return target
