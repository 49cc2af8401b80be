"""Choose which of a checkpoint's keys are the model: ``--copy``, ``--drop``, ``--keep``, missing parts.

Checkpoints from the wild hold more than one model's weights, or keys that are no model's weights:

- several copies of the model (an EMA or SWA average beside the raw weights, a teacher and a
  student, a frozen reference model): the user picks one with ``--copy``, the others are dropped
  and listed with the reason;
- keys that are not weights (a weighted loss's ``loss_fn.weight``): the user drops them with
  ``--drop``, and the report lists them;
- an encoder saved without some of its parts (frozen embeddings left out of the state dict): the
  error names what is present and what is missing.

Pure: the key functions take the state dict's shapes (or names) only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import MappingError
from ..registry.families import FAMILIES, Family
from ..text import quoted
from .keys import strip_wrappers

Shape = tuple[int, ...]


#: Reason given for keys named by ``--drop``.
DROP_REASON = "dropped by --drop"


#: Reason given for keys named by ``--keep``.
KEEP_REASON = "kept beside the model in custom_head.safetensors by --keep (the class does not compute it)"


#: The ``--copy`` value that selects the copy at the root of the state dict.
ROOT_COPY = "."


def _shown(keys: Iterable[str], limit: int = 6) -> str:
    return quoted(keys, limit)


def _tops(names: Iterable[str]) -> str:
    return _shown({n.split(".")[0] + "." for n in names})


def drop_keys(
    names: Iterable[str], prefixes: Sequence[str], *, option: str = "--drop", reason: str = DROP_REASON
) -> dict[str, str]:
    """The keys that ``--drop`` (or ``--keep``) names: each key that starts with one of ``prefixes``.

    A prefix matches a key as written in the checkpoint, or after the wrapper prefixes
    (``_forward_module.``, ``module.``, ``_orig_mod.``) that the mapping strips.

    Args:
        names: the state dict's keys.
        prefixes: what the option was given (a key or the prefix of several, e.g. ``loss_fn.``).
        option: ``--drop`` or ``--keep``, for messages.
        reason: the reason recorded for each key (``DROP_REASON``, ``KEEP_REASON``).

    Returns:
        Key to ``reason``.

    Raises:
        MappingError: a prefix matches no key (a typo would otherwise set nothing aside, silently).
    """
    names = list(names)
    _, stripped = strip_wrappers(names)
    dropped: dict[str, str] = {}
    for prefix in prefixes:
        hits = [k for k in names if k.startswith(prefix) or stripped[k].startswith(prefix)]
        if not hits:
            raise MappingError(
                f"{option} '{prefix}' matches no key of the checkpoint",
                f"keys start with {_tops(names)}; pass a key or a prefix of keys (see `longformer-convert inspect`)",
            )
        dropped.update(dict.fromkeys(hits, reason))
    return dropped


def find_crfs(shapes: Mapping[str, Shape]) -> dict[str, int]:
    """The conditional random fields among ``shapes``: module prefix to its number of tags.

    A CRF (pytorch-crf's ``CRF``, AllenNLP's ``ConditionalRandomField``, and the modules written after
    them) keeps ``transitions`` ``(n, n)`` (the score of tag ``j`` following tag ``i``),
    ``start_transitions`` ``(n,)`` and ``end_transitions`` ``(n,)``; it decodes a tagger's logits by
    Viterbi decoding (the best tag sequence), not by argmax.
    """
    found: dict[str, int] = {}
    for key, shape in shapes.items():
        if key != "transitions" and not key.endswith(".transitions"):
            continue
        prefix = key[: -len("transitions")]
        n = shape[0] if len(shape) == 2 and shape[0] == shape[1] else None
        ends = (tuple(shapes.get(prefix + "start_transitions", ())), tuple(shapes.get(prefix + "end_transitions", ())))
        if n and ends == ((n,), (n,)):
            found[prefix] = n
    return found


@dataclass(frozen=True)
class Copy:
    """One copy of the model in a state dict.

    Attributes:
        root: the prefix (after wrapper prefixes) of the copy's keys; ``""`` for the copy at the root.
        encoder: the prefix of the copy's encoder.
        keys: the copy's keys, as written in the checkpoint.
        extra: keys of the wrapper that holds the copy but are not its weights (``ema.n_averaged``).
    """

    root: str
    encoder: str
    keys: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The ``--copy`` value that selects this copy."""
        return self.root or ROOT_COPY

    @property
    def label(self) -> str:
        """How messages name the copy."""
        return f"'{self.root}'" if self.root else "the root copy"


def _encoders(stripped: Iterable[str]) -> list[str]:
    # each family's base model is found by its anchor key (Family.anchor); its prefix is the copy's encoder
    names = list(stripped)
    anchors = [family.anchor for family in FAMILIES.values()]
    return sorted({n[: -len(a)] for n in names for a in anchors if n == a or n.endswith("." + a)})


def find_copies(names: Iterable[str]) -> list[Copy]:
    """The copies of the model in a state dict; empty when it holds one model (or none).

    Each encoder (found by its embeddings) is one copy. The copies' roots are what their encoders'
    prefixes do not share at the end: ``model.`` and ``ema.module.model.`` are the root copy and the
    copy at ``ema.module.``; ``teacher.longformer.`` and ``student.longformer.`` are the copies at
    ``teacher.`` and ``student.``. A key belongs to the copy with the longest root it starts with;
    keys under the attribute that holds a copy (``ema.`` for ``ema.module.``) but outside the copy
    are that wrapper's bookkeeping (``ema.n_averaged``). With a root copy, every other key is its.

    Args:
        names: the state dict's keys.
    """
    names = list(names)
    _, stripped = strip_wrappers(names)
    encoders = _encoders(stripped.values())
    if len(encoders) < 2:
        return []
    parts = [e.rstrip(".").split(".") if e else [] for e in encoders]
    shared = 0
    while all(len(p) > shared for p in parts) and len({p[len(p) - 1 - shared] for p in parts}) == 1:
        shared += 1
    roots = [".".join(p[: len(p) - shared]) + "." if len(p) > shared else "" for p in parts]
    owners = {r: ".".join(r.rstrip(".").split(".")[:-1]) + "." if r.count(".") > 1 else r for r in roots if r}
    keys: dict[str, list[str]] = {r: [] for r in roots}
    extra: dict[str, list[str]] = {r: [] for r in roots}
    for source, name in stripped.items():
        inside = [r for r in roots if r and name.startswith(r)]
        if inside:
            keys[max(inside, key=len)].append(source)
            continue
        held = [r for r, owner in owners.items() if name.startswith(owner)]
        if held:
            extra[max(held, key=lambda r: len(owners[r]))].append(source)
        elif "" in keys:
            keys[""].append(source)
    return [
        Copy(root=r, encoder=e, keys=tuple(keys[r]), extra=tuple(extra[r]))
        for r, e in sorted(zip(roots, encoders, strict=True), key=lambda x: (x[0] != "", x[0]))
    ]


def _copies_line(copies: Sequence[Copy]) -> str:
    return "; ".join(f"{c.label} (encoder at '{c.encoder}', {len(c.keys)} keys): --copy {c.option}" for c in copies)


def select_copy(names: Iterable[str], copy: str | None) -> tuple[Copy | None, dict[str, str]]:
    """The copy ``--copy`` selects, and the keys of the other copies with the reason each is dropped.

    Args:
        names: the state dict's keys.
        copy: the ``--copy`` value: a copy's root (``ema.module.``; the trailing dot may be left
            out), ``.`` for the root copy, or ``None`` when not given.

    Returns:
        The selected copy (``None`` when the state dict holds one model) and key to reason for every
        key outside it.

    Raises:
        MappingError: several copies and no ``--copy`` (the message lists each with the value that
            selects it), or a ``--copy`` that names no copy.
    """
    copies = find_copies(names)
    if not copies:
        if copy is not None and copy.strip(".") != "":
            raise MappingError(
                f"--copy '{copy}' was given, but the checkpoint holds one copy of the model",
                "leave --copy out",
            )
        return None, {}
    if copy is None:
        raise MappingError(
            f"checkpoint holds {len(copies)} copies of the model: {_copies_line(copies)}",
            "pass --copy with the copy to convert (an EMA or SWA average is usually the one to export); "
            "the others are dropped and listed in the report",
        )
    wanted = "" if copy.strip() in ("", ROOT_COPY) else copy.strip().rstrip(".") + "."
    chosen = next((c for c in copies if c.root == wanted), None)
    if chosen is None:
        raise MappingError(f"--copy '{copy}' names no copy of the model", f"the copies are: {_copies_line(copies)}")
    dropped: dict[str, str] = {}
    selected = f"--copy {chosen.option} selects {chosen.label}"
    for other in copies:
        for key in other.extra:
            dropped[key] = f"bookkeeping of {other.label} (not a weight)"
        if other is not chosen:
            for key in other.keys:
                dropped[key] = f"another copy of the model ({other.label}); {selected}"
    return chosen, dropped


def check_encoder_parts(names: Iterable[str]) -> None:
    """Refuse, naming what is present and what is missing, an encoder saved without its embeddings.

    A module that freezes the embeddings and saves only what it trains (``strict_loading=False``)
    writes the attention layers but not the embeddings; "no Longformer encoder" would overstate it.
    A state dict with no part of an encoder at all (a linear probe that saved its head only) is
    refused naming the keys it holds. Does nothing when the embeddings are there, or when the keys
    are of another encoder (the key mapping says what they are).

    Raises:
        MappingError: attention layers with global-attention weights but no word embeddings; or no
            key of an encoder at all.
    """
    names = list(names)
    _, stripped = strip_wrappers(names)
    if _encoders(stripped.values()):
        return
    for family in FAMILIES.values():
        _check_family_parts(family, stripped.values())
    if names and not any(_is_encoder_part(n) for n in stripped.values()):
        family = FAMILIES["longformer"]
        raise MappingError(
            f"no Longformer encoder in the checkpoint: it holds {len(names)} keys ({_shown(names)}) and none of "
            f"an encoder (no '{family.anchor}', no attention layers)",
            "if the module froze the encoder and saved only what it trained (strict_loading=False), save a "
            "checkpoint with the whole model's state dict; otherwise pass the checkpoint of a Longformer model",
        )


def _check_family_parts(family: Family, stripped: Iterable[str]) -> None:
    # the family's attention layers (with its global-attention weights) without its embeddings
    names = list(stripped)
    stack = "." + next(iter(family.layers.values()))  # the encoder's layers: ".encoder.layer." (LED: ".layers.")
    marks = [n for n in names if family.global_mark in "." + n and stack in "." + n]
    if not marks:
        return
    prefix = min({m[: ("." + m).index(stack)] for m in marks}, default="")
    under = [n[len(prefix) :] for n in names if n.startswith(prefix)]
    layers = {n.split(".")[2] for n in under if n.startswith(stack[1:])}
    present = [p for p in family.part_names if p in {n.split(".")[0] for n in under}]
    root = stack[1:].split(".")[0]  # the part that holds the layers ("encoder")
    shown = ", ".join(
        family.part_names[p] + (f" ({len(layers)} layers, with global attention)" if p == root else "") for p in present
    )
    missing = [prefix + key for key in family.embedding_keys if prefix + key not in names]
    raise MappingError(
        f"the checkpoint has part of {family.with_article(full=False)} {family.base_noun} under "
        f"'{prefix or '<root>'}': {shown}, but not the embeddings (missing {_shown(missing)})",
        "the module saved only the weights it trained (frozen embeddings left out, as with strict_loading=False); "
        "save a checkpoint with the whole model's state dict, or add the missing tensors from the base weights",
    )


def _is_encoder_part(name: str) -> bool:
    parts = name.split(".")
    return any(p in family.key_words for family in FAMILIES.values() for p in parts)


@dataclass
class Selection:
    """What goes to the key mapping, and what was set aside before it.

    Attributes:
        shapes: the keys that go to the key mapping, and their shapes.
        dropped: key to the reason it was set aside (``--drop``, another copy, bookkeeping).
        copy: the selected copy, when the state dict holds several.
        kept: keys ``--keep`` sets beside the model (``custom_head.safetensors``), to ``KEEP_REASON``.
    """

    shapes: dict[str, Shape]
    dropped: dict[str, str] = field(default_factory=dict)
    copy: Copy | None = None
    kept: dict[str, str] = field(default_factory=dict)


def select(
    shapes: Mapping[str, Shape], *, copy: str | None = None, drop: Sequence[str] = (), keep: Sequence[str] = ()
) -> Selection:
    """Apply ``--drop`` and ``--keep``, then ``--copy``, then check that an encoder is whole enough to look for.

    Args:
        shapes: the state dict's keys and shapes.
        copy: the ``--copy`` value (see ``select_copy``).
        drop: the ``--drop`` values (see ``drop_keys``).
        keep: the ``--keep`` values: trained tensors beside the class's head (a CRF's transitions),
            kept in ``custom_head.safetensors`` while the rest converts to the task's class.

    Returns:
        The ``Selection``; its ``shapes`` go to ``mapping.plan_mapping``, its ``dropped`` and ``kept``
        into the mapping's dropped keys (``kept`` also into its custom head).

    Raises:
        MappingError: see ``drop_keys``, ``select_copy`` and ``check_encoder_parts``; a key that
            both ``--drop`` and ``--keep`` name.
    """
    dropped = drop_keys(shapes, drop) if drop else {}
    kept = drop_keys(shapes, keep, option="--keep", reason=KEEP_REASON) if keep else {}
    both = sorted(set(dropped) & set(kept))
    if both:
        raise MappingError(
            f"--drop and --keep both name {_shown(both)}", "pass each key to one of them: --keep keeps it, --drop not"
        )
    rest = [k for k in shapes if k not in dropped and k not in kept]
    chosen, others = select_copy(rest, copy)
    dropped.update(others)
    remaining = {k: tuple(shapes[k]) for k in rest if k not in others}
    check_encoder_parts(remaining)
    return Selection(shapes=remaining, dropped=dropped, copy=chosen, kept=kept)
