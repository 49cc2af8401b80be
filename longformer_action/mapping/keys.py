"""The key mapping and the search for the base model (the encoder, or LED's encoder and decoder) in a state dict.

Pure: works on key names and shapes only. The base model is found by its keys; the task is read from
the keys outside it (the head) through the head matchers each task registers (``heads.py``), or
given by the user (``layout.py``). A key is either mapped to a target key, or dropped for a stated
reason; anything else is an error, because a converter that drops unknown keys silently produces a
model that runs and answers nonsense.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import MappingError
from ..registry.families import FAMILIES, Family
from ..text import listing, quoted

#: Prefixes that wrappers add in front of every key: DeepSpeed in Lightning < 2.1, DDP saved
#: by hand, torch.compile.
WRAPPER_PREFIXES = ("_forward_module.", "module.", "_orig_mod.")


_POSITION_IDS = "embeddings.position_ids"


_POSITION_IDS_REASON = "buffer that transformers recomputes (saved by transformers 3.1-4.30)"


Shape = tuple[int, ...]


@dataclass
class KeyMapping:
    """The fate of every key in a checkpoint's state dict, and the task it was read as.

    Attributes:
        task: the task's name (see ``tasks.REGISTRY``).
        layout: a human description of the layout that was detected.
        wrapper_prefix: what was stripped from the front of every key (``""`` for nothing).
        encoder_prefix: the prefix (after the wrapper) under which the encoder's keys live.
        head_prefix: the prefix (after the wrapper) of the head's keys.
        head: how the head was read (``Reading.why``).
        mapped: source key to target key.
        combined: target key to source keys concatenated along dim 0 (split start and end heads);
            each of those sources is also in ``mapped``, to this target.
        dropped: source key to the reason it was dropped.
        num_labels: the head's number of outputs, where the task's class takes it from the config.
        untied: tied target key (``Task.tied``) to why it is saved untied; empty when all are tied.
        family: the model family (``tasks.FAMILIES``).
        custom_head: source keys of a head no class computes, dropped by ``feature-extraction``
            (kept beside the model in ``custom_head.safetensors``).
        family: the model family (``tasks.FAMILIES``): ``longformer`` or ``led``.
    """

    task: str
    layout: str
    wrapper_prefix: str
    encoder_prefix: str
    head_prefix: str
    head: str = ""
    mapped: dict[str, str] = field(default_factory=dict)
    combined: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    num_labels: int | None = None
    untied: dict[str, str] = field(default_factory=dict)
    family: str = "longformer"
    custom_head: list[str] = field(default_factory=list)

    @property
    def has_pooler(self) -> bool:
        """Whether the mapped encoder includes a pooler."""
        return any(".pooler." in "." + t for t in self.mapped.values())


def _list(keys: Iterable[str], limit: int = 6) -> str:
    return quoted(keys, limit)


def _with_shapes(keys: Iterable[str], shapes: Mapping[str, Shape], limit: int = 8) -> str:
    return listing([f"'{k}' {list(shapes[k])}" for k in sorted(keys)], limit)


def strip_wrappers(keys: Sequence[str]) -> tuple[str, dict[str, str]]:
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


def _tops(names: Iterable[str]) -> str:
    return _list({n.split(".")[0] + "." for n in names})


def find_encoder(names: Iterable[str], prefix: str = "auto") -> str:
    """The prefix under which a Longformer (or LED) base model's keys live (``""`` for the root).

    Raises:
        MappingError: see ``locate_base_model``.
    """
    return locate_base_model(names, prefix)[0]


def _anchored(names: set[str], anchor: str) -> list[str]:
    return sorted({n[: -len(anchor)] for n in names if n == anchor or n.endswith("." + anchor)})


def locate_base_model(names: Iterable[str], prefix: str = "auto") -> tuple[str, Family]:
    """The prefix under which the base model's keys live (``""`` for the root), and its family.

    "Base model" as transformers says it (``base_model_prefix``): the encoder inside the checkpoint
    (LED's encoder and decoder), not ``--base-model``, the folder or Hub id the config comes from.

    The family is read from the keys: Longformer's word embeddings, or LED's encoder positions
    (``led.encoder`` / ``led.decoder``).

    Args:
        names: the state dict's keys (wrapper prefixes stripped).
        prefix: ``auto``, or the base model's prefix (``--prefix``).

    Returns:
        ``(prefix, family)``.

    Raises:
        MappingError: no base model, more than one, a ``--prefix`` no key starts with, or a base
            model without Longformer's global-attention weights (a BERT, RoBERTa or BART checkpoint).
    """
    names = set(names)
    prefix_hint = "pass --prefix with the encoder's prefix (see `longformer-convert inspect`)"
    found = [(p, f) for f in FAMILIES.values() for p in _anchored(names, f.anchor)]
    if prefix == "auto":
        if not found:
            anchors = " or ".join(f"'{f.anchor}'" for f in FAMILIES.values())
            raise MappingError(
                f"no Longformer encoder in the checkpoint: no key ends with {anchors} (keys start with {_tops(names)})",
                "pass the checkpoint of a Longformer (or LED) model, or --prefix if the encoder is stored differently",
            )
        if len(found) > 1:
            raise MappingError(
                f"checkpoint holds {len(found)} encoders (under {_list(p or '<root>' for p, _ in found)})", prefix_hint
            )
        encoder, family = found[0]
    else:
        encoder = prefix if prefix.endswith(".") or prefix == "" else prefix + "."
        if not any(n.startswith(encoder) for n in names):
            raise MappingError(
                f"no key starts with --prefix '{encoder}'",
                f"keys start with {_tops(names)}; pass one of those, or --prefix auto",
            )
        family = next((f for p, f in found if p == encoder), None) or next(
            (f for f in FAMILIES.values() if any(f.global_mark in "." + n for n in names if n.startswith(encoder))),
            FAMILIES["longformer"],
        )
        if encoder + family.anchor not in names and any(family.global_mark in "." + n for n in names):
            under = [p for p, f in found if f is family]
            raise MappingError(
                f"--prefix '{encoder}' is not where the {family.short} base model's keys start: "
                f"no key '{encoder}{family.anchor}'",
                f"pass --prefix {under[0] or '<root>'}" if under else "pass --prefix auto",
            )
    if not any(family.global_mark in "." + n for n in names if n.startswith(encoder)):
        raise MappingError(
            f"checkpoint is not {family.with_article(full=False)}: its encoder has no global-attention weights "
            f"('{family.global_mark.strip('.')}'); it looks like {family.looks_like}",
            f"pass the checkpoint of {family.with_article(full=False)} model",
        )
    return encoder, family


def checkpoint_family(shapes: Mapping[str, Shape], prefix: str = "auto") -> tuple[Family, int]:
    """The family of a checkpoint's base model and its hidden size, from its keys and shapes.

    Raises:
        MappingError: see ``locate_base_model``.
    """
    _, stripped = strip_wrappers(list(shapes))
    encoder, family = locate_base_model(stripped.values(), prefix)
    anchor = next((s for s, n in stripped.items() if n == encoder + family.anchor), None)
    shape = tuple(shapes[anchor]) if anchor is not None else ()
    return family, int(shape[1]) if len(shape) == 2 else 0
