"""``inspect``: describe a checkpoint without loading its tensor data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConversionError, MappingError
from ..mapping import adapters, selection
from ..mapping.extra_keys import explain_extra_keys
from ..mapping.layout import head_readings, plan_mapping
from ..progress import human_bytes
from ..reading.checkpoint import read_checkpoint
from ..reading.formats import describe_writer
from ..reading.pretrained import TRANSFORMERS
from ..registry import tasks
from ..registry.families import FAMILIES
from ..text import listing


def inspect(checkpoint: Path, *, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Describe a checkpoint without loading its tensor data: format, progress, layout, sizes."""
    ckpt = read_checkpoint(checkpoint, trust=trust_checkpoint)
    tensors = {k: v for k, v in ckpt.state_dict.items() if hasattr(v, "shape")}
    info: dict[str, Any] = {
        "path": str(ckpt.path),
        "format": ckpt.file_format,
        "generation": ckpt.writer,
        "loader": ckpt.loader,
        "placeholders": ckpt.placeholders,
        "lightning_version": ckpt.lightning_version,
        "epoch": ckpt.epoch,
        "global_step": ckpt.global_step,
        "top_level_keys": ckpt.top_level_keys,
        "hyper_parameters": ckpt.hyper_parameters,
        "model_checkpoints": [state.to_dict() for state in ckpt.model_checkpoints],
        "tensors": len(tensors),
        "parameters": sum(int(t.numel()) for t in tensors.values()),
        "dtypes": dict(Counter(str(t.dtype).removeprefix("torch.") for t in tensors.values())),
        "weight_bytes": ckpt.weight_bytes(),
        "file_bytes": ckpt.file_bytes,
        "layout": None,
        "task": None,
        "layout_error": None,
    }
    info["other_bytes"] = max(info["file_bytes"] - info["weight_bytes"], 0)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    copies = selection.find_copies(shapes)
    info["copies"] = [{"copy": c.option, "encoder": c.encoder, "keys": len(c.keys)} for c in copies]
    found = adapters.find_adapters(shapes)
    info["adapters"] = None if found is None else {"root": found.root, "modules": list(found.modules)}
    if found is not None:
        shapes = adapters.merged_shapes(shapes, found)
    try:
        if copies:
            selection.select_copy(shapes, None)  # raises, listing the copies and the --copy of each
        info["head"] = head_readings(shapes)
        info["crfs"] = selection.find_crfs(shapes)
        try:
            mapping = plan_mapping(shapes)
        except MappingError as exc:  # keys beside a head: name every way out, as convert does
            raise explain_extra_keys(shapes, exc, task="auto", prefix="auto") from None
    except ConversionError as exc:
        info["layout_error"] = exc.format_message()
        return info
    task = tasks.get(mapping.task, mapping.family)
    family = FAMILIES[mapping.family]
    info["layout"] = {
        "description": mapping.layout,
        "wrapper_prefix": mapping.wrapper_prefix,
        "encoder_prefix": mapping.encoder_prefix,
        "head_prefix": mapping.head_prefix,
        "mapped": len(mapping.mapped),
        "dropped": dict(mapping.dropped),
    }
    info["task"] = task.name
    info["family"] = family.name
    info["architecture"] = task.architecture
    info["num_labels"] = mapping.num_labels if task.labels else None
    prefix = tasks.base_model_prefix(task)
    embeddings = tensors[next(s for s, t in mapping.mapped.items() if t == prefix + family.vocab_key)]
    info["shape"] = {"vocab_size": int(embeddings.shape[0]), "hidden_size": int(embeddings.shape[1])}
    for field, stack in family.layers.items():
        info["shape"][field] = len(
            {t[len(prefix + stack) :].split(".")[0] for t in mapping.mapped.values() if t.startswith(prefix + stack)}
        )
    return info


def describe(info: dict[str, Any]) -> str:
    """``inspect``'s text: one line per fact of ``info`` (what ``inspect`` returned)."""
    layout = info["layout"]
    lines = [
        f"checkpoint:    {info['path']}",
        f"format:        {info['format']} ({info['generation']}, read by the {info['loader']} loader)",
        f"written by:    {describe_writer(info['generation'], info['lightning_version'])}; "
        f"epoch {_fmt(info['epoch'])}, step {_fmt(info['global_step'])}",
        f"hyper-params:  {', '.join(info['hyper_parameters']) or 'none'}",
        f"tensors:       {info['tensors']} ({info['parameters']:,} parameters; {info['dtypes']})",
        f"bytes:         {human_bytes(info['weight_bytes'])} of weights in {human_bytes(info['file_bytes'])} "
        f"({human_bytes(info['other_bytes'])} {_other_bytes(info)})",
    ]
    for m in info["model_checkpoints"]:
        if m["monitor"] is not None or m["best_score"] is not None:
            mode = f" ({m['mode']})" if m["mode"] else ""
            lines.append(
                f"monitored:     {m['monitor'] or 'a metric not named'}{mode} by {m['callback']}: best "
                f"{_score(m['best_score'])} ({m['best_model_path'] or 'n/a'}), this file's weights "
                f"{_score(m['file_score'])}"
            )
    if info["placeholders"]:
        lines.append(f"not run:       {', '.join(info['placeholders'])} (replaced by inert placeholders)")
    if info.get("copies"):
        shown = "; ".join(f"{c['copy']} (encoder at '{c['encoder']}', {c['keys']} keys)" for c in info["copies"])
        lines.append(f"copies:        {shown} (pick one with --copy)")
    if info.get("adapters"):
        adapted = info["adapters"]
        where = adapted["root"] or "<root>"
        lines.append(
            f"adapters:      LoRA on {len(adapted['modules'])} modules under '{where}', not merged "
            "(--adapter-config merges them)"
        )
    for prefix, tags in (info.get("crfs") or {}).items():
        lines.append(f"crf:           '{prefix}' over {tags} tags (--keep {prefix} keeps it beside the tagger)")
    head = info.get("head")
    if head:
        keys = listing([f"{k} {v}" for k, v in head["head_keys"].items()], 8) or "none (the encoder alone)"
        lines.append(f"encoder:       '{head['encoder_prefix'] or '<root>'}'; head keys: {keys}")
    if layout:
        labels = f", {info['num_labels']} labels" if info["num_labels"] else ""
        lines += [
            f"task:          {info['task']} ({info['architecture']}{labels}); {info['shape']}",
            f"layout:        {layout['description']}",
            f"keys:          {layout['mapped']} mapped, {len(layout['dropped'])} dropped",
        ]
    else:
        if head and head["readings"]:
            readings = "; ".join(f"{r['task']} ({r['why']})" for r in head["readings"])
            lines.append(f"readings:      {readings}; or a head no transformers class computes (feature-extraction)")
        lines.append(f"task:          not decided: {info['layout_error']}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _other_bytes(info: dict[str, Any]) -> str:
    # what the file holds beside the weights depends on what wrote it
    if info["generation"] == TRANSFORMERS:
        return "in the folder's other files: config, tokenizer, a Trainer's optimizer state"
    if info["format"] == "safetensors":
        return "of safetensors header (names, shapes, dtypes, offsets)"
    if info["generation"] == "state-dict":
        return "of serialization overhead and other entries"
    return "of optimizer state and other data"


def _score(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.4g}"
