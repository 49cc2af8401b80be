"""Map a checkpoint's keys to ``LongformerForQuestionAnswering``'s, accounting for every key.

Pure: works on key names and shapes only. A key is either mapped to a target key, or dropped
for a stated reason; anything else is an error, because a converter that drops unknown keys
silently produces a model that runs and answers nonsense.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import MappingError

#: Prefixes that wrappers add in front of every key: DeepSpeed in Lightning < 2.1, DDP saved
#: by hand, torch.compile.
WRAPPER_PREFIXES = ("_forward_module.", "module.", "_orig_mod.")

ENCODER_TARGET = "longformer."
HEAD_TARGET = "qa_outputs."
_EMBEDDINGS_ANCHOR = "embeddings.word_embeddings.weight"
_HEAD_ANCHOR = "qa_outputs.weight"
_GLOBAL_ATTENTION_MARK = ".attention.self.query_global."

_DROP_REASONS = {
    "pooler.": "LongformerForQuestionAnswering has no pooler",
    "embeddings.position_ids": "buffer that transformers recomputes (saved by transformers 3.1-4.30)",
}

_LAYOUT_NAMES = {
    ("model.", ""): "origin: LongformerModel as `model`, head as `qa_outputs`",
    ("model.longformer.", "model."): "wrapped: LongformerForQuestionAnswering as `model`",
    ("longformer.", ""): "bare: LongformerForQuestionAnswering keys",
}

Shape = tuple[int, ...]


@dataclass
class KeyMapping:
    """The fate of every key in a checkpoint's state dict.

    Attributes:
        layout: a human description of the layout that was detected.
        wrapper_prefix: what was stripped from the front of every key (``""`` for nothing).
        encoder_prefix: the prefix (after the wrapper) under which the encoder's keys live.
        head_prefix: the prefix of ``qa_outputs.*``.
        mapped: source key to target key.
        dropped: source key to the reason it was dropped.
    """

    layout: str
    wrapper_prefix: str
    encoder_prefix: str
    head_prefix: str
    mapped: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)


def _list(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _strip_wrappers(keys: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Strip wrapper prefixes shared by all keys; return the stripped prefix and key -> stripped."""
    stripped = {k: k for k in keys}
    removed = ""
    changed = True
    while changed and stripped:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(v.startswith(prefix) for v in stripped.values()):
                stripped = {k: v[len(prefix) :] for k, v in stripped.items()}
                removed += prefix
                changed = True
    # torch.compile of an inner module leaves `._orig_mod.` in the middle of keys
    stripped = {k: v.replace("._orig_mod.", ".") for k, v in stripped.items()}
    return removed, stripped


def _find_prefix(names: Iterable[str], anchor: str, what: str, option_hint: str) -> str:
    found = sorted({n[: -len(anchor)] for n in names if n == anchor or n.endswith("." + anchor)})
    if len(found) > 1:
        raise MappingError(
            f"checkpoint holds {len(found)} {what}s (under {_list(p or '<root>' for p in found)})",
            option_hint,
        )
    return found[0] if found else ""


def plan_mapping(
    shapes: Mapping[str, Shape],
    expected: Mapping[str, Shape] | None,
    *,
    prefix: str = "auto",
) -> KeyMapping:
    """Decide where each checkpoint key goes.

    Args:
        shapes: the checkpoint's state dict keys and tensor shapes.
        expected: the target model's state dict keys and shapes (from the base config); ``None``
            to detect the layout only, without checking keys and shapes against a config.
        prefix: ``auto`` to detect the encoder's prefix, or the prefix itself (after any wrapper
            prefix), e.g. ``model.`` or ``model.longformer.``.

    Returns:
        The ``KeyMapping``: every key mapped or dropped with a reason.

    Raises:
        MappingError: no Longformer encoder, no question-answering head, unknown keys, missing keys,
            or a shape that disagrees with the base config.
    """
    if not shapes:
        raise MappingError("checkpoint's state dict is empty", "pass the checkpoint of a trained model")
    wrapper, stripped = _strip_wrappers(list(shapes))
    names = set(stripped.values())
    prefix_hint = "pass --prefix with the encoder's prefix (see `longformer-convert inspect`)"

    if prefix == "auto":
        anchor_hits = [n for n in names if n == _EMBEDDINGS_ANCHOR or n.endswith("." + _EMBEDDINGS_ANCHOR)]
        if not anchor_hits:
            raise MappingError(
                f"no Longformer encoder in the checkpoint: no key ends with '{_EMBEDDINGS_ANCHOR}' "
                f"(keys start with {_list({n.split('.')[0] + '.' for n in names})})",
                "pass the checkpoint of a Longformer model, or --prefix if the encoder is stored differently",
            )
        encoder = _find_prefix(names, _EMBEDDINGS_ANCHOR, "encoder", prefix_hint)
    else:
        encoder = prefix if prefix.endswith(".") or prefix == "" else prefix + "."
        if not any(n.startswith(encoder) for n in names):
            raise MappingError(
                f"no key starts with --prefix '{encoder}'",
                f"keys start with {_list({n.split('.')[0] + '.' for n in names})}; pass one of those, or --prefix auto",
            )

    encoder_names = [n for n in names if n.startswith(encoder)]
    if not any(_GLOBAL_ATTENTION_MARK in "." + n for n in encoder_names):
        raise MappingError(
            "checkpoint is not a Longformer: its encoder has no global-attention weights "
            "('attention.self.query_global'); it looks like a BERT or RoBERTa checkpoint",
            "pass the checkpoint of a Longformer model",
        )

    head_candidates = [n for n in names if not n.startswith(encoder) or encoder == ""]
    head = _find_prefix(head_candidates, _HEAD_ANCHOR, "question-answering head", prefix_hint)
    if not any(n == head + _HEAD_ANCHOR for n in names):
        raise MappingError(
            "checkpoint has no question-answering head: no key ends with 'qa_outputs.weight'",
            "this tool converts Longformer question-answering checkpoints; name the head `qa_outputs` "
            "in the LightningModule (an encoder-only checkpoint has no head to convert)",
        )

    layout = _LAYOUT_NAMES.get((encoder, head), f"encoder at `{encoder or '<root>'}`, head at `{head or '<root>'}`")
    result = KeyMapping(layout=layout, wrapper_prefix=wrapper, encoder_prefix=encoder, head_prefix=head)
    unknown: list[str] = []
    for source, name in stripped.items():
        if name.startswith(head + HEAD_TARGET) and name[len(head) :] in (HEAD_TARGET + "weight", HEAD_TARGET + "bias"):
            result.mapped[source] = name[len(head) :]
        elif name.startswith(encoder):
            rest = name[len(encoder) :]
            reason = next((why for start, why in _DROP_REASONS.items() if rest.startswith(start)), None)
            if reason:
                result.dropped[source] = reason
            else:
                result.mapped[source] = ENCODER_TARGET + rest
        else:
            unknown.append(source)
    if unknown:
        raise MappingError(
            f"checkpoint has {len(unknown)} key(s) outside the encoder ('{encoder}') and the head: {_list(unknown)}",
            "these would be lost; if they belong to the model, pass --prefix, otherwise remove them "
            "from the state dict before converting",
        )
    if expected is not None:
        _check_against(result, shapes, expected)
    return result


def _check_against(result: KeyMapping, shapes: Mapping[str, Shape], expected: Mapping[str, Shape]) -> None:
    targets = {t: s for s, t in result.mapped.items()}
    extra = sorted(set(targets) - set(expected))
    missing = sorted(set(expected) - set(targets))
    layers, expected_layers = _layer_count(targets), _layer_count(expected)
    detail = (
        f" (the checkpoint has {layers} layers, the base config {expected_layers})" if layers != expected_layers else ""
    )
    if extra:
        raise MappingError(
            f"checkpoint has {len(extra)} weight(s) the base config does not{detail}: "
            f"{_list(targets[t] for t in extra)}",
            "pass --base-model with the config the model was trained from",
        )
    if missing:
        fix = (
            "pass --base-model with the config the model was trained from"
            if detail
            else ("pass the checkpoint of the whole model (or --prefix if its keys are stored elsewhere)")
        )
        raise MappingError(f"checkpoint lacks {len(missing)} weight(s) the model needs{detail}: {_list(missing)}", fix)
    wrong = [(t, s) for t, s in sorted(targets.items()) if tuple(shapes[s]) != tuple(expected[t])]
    if wrong:
        target, source = wrong[0]
        more = f" ({len(wrong)} tensors disagree; the first:)" if len(wrong) > 1 else ""
        raise MappingError(
            f"checkpoint does not fit the base config{more} tensor '{source}' has shape {list(shapes[source])} "
            f"but the config needs {list(expected[target])} for '{target}'",
            "pass --base-model with the config the model was trained from (hidden size, vocabulary, positions)",
        )


def _layer_count(keys: Iterable[str]) -> int:
    layers = set()
    for k in keys:
        parts = k.split(".")
        if "layer" in parts:
            i = parts.index("layer")
            if i + 1 < len(parts) and parts[i + 1].isdigit():
                layers.add(int(parts[i + 1]))
    return len(layers)
