"""Map a checkpoint's keys to a transformers class's, accounting for every key.

Pure: works on key names and shapes only. The encoder is found by its keys; the task is read from
the keys outside it (the head) through the task registry (``tasks.py``), or given by the user. A key
is either mapped to a target key, or dropped for a stated reason; anything else is an error, because
a converter that drops unknown keys silently produces a model that runs and answers nonsense.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import tasks
from .errors import MappingError
from .tasks import FAMILIES, Family, Head, Reading, Task

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
    keys = sorted(keys)
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _with_shapes(keys: Iterable[str], shapes: Mapping[str, Shape], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(f"'{k}' {list(shapes[k])}" for k in keys[:limit])
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


def _tops(names: Iterable[str]) -> str:
    return _list({n.split(".")[0] + "." for n in names})


def find_encoder(names: Iterable[str], prefix: str = "auto") -> str:
    """The prefix under which a Longformer (or LED) base model's keys live (``""`` for the root).

    Raises:
        MappingError: see ``find_base``.
    """
    return find_base(names, prefix)[0]


def _anchored(names: set[str], anchor: str) -> list[str]:
    return sorted({n[: -len(anchor)] for n in names if n == anchor or n.endswith("." + anchor)})


def find_base(names: Iterable[str], prefix: str = "auto") -> tuple[str, Family]:
    """The prefix under which the base model's keys live (``""`` for the root), and its family.

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
            f"checkpoint is not {family.a(False)}: its encoder has no global-attention weights "
            f"('{family.global_mark.strip('.')}'); it looks like {family.looks_like}",
            f"pass the checkpoint of {family.a(False)} model",
        )
    return encoder, family


def base_family(shapes: Mapping[str, Shape], prefix: str = "auto") -> tuple[Family, int]:
    """The family of a checkpoint's base model and its hidden size, from its keys and shapes.

    Raises:
        MappingError: see ``find_base``.
    """
    _, stripped = _strip_wrappers(list(shapes))
    encoder, family = find_base(stripped.values(), prefix)
    anchor = next((s for s, n in stripped.items() if n == encoder + family.anchor), None)
    shape = tuple(shapes[anchor]) if anchor is not None else ()
    return family, int(shape[1]) if len(shape) == 2 else 0


def _head(
    stripped: Mapping[str, str], shapes: Mapping[str, Shape], encoder: str, family: Family
) -> tuple[Head, dict[str, str]]:
    """The head (keys outside the encoder, relative to its prefix) and head key -> source key."""
    parent = next((encoder[: -len(a)] for a in family.class_attributes if encoder.endswith(a)), None)
    class_layout = parent is not None and all(
        name.startswith(parent) for name in stripped.values() if not name.startswith(encoder)
    )
    head_prefix = parent if class_layout else ""
    back = {
        name[len(head_prefix) :]: source
        for source, name in stripped.items()
        if not name.startswith(encoder) or encoder == ""
        if not (encoder == "" and name.split(".")[0] in family.root_keys)
    }
    embeddings = next(s for s, n in stripped.items() if n == encoder + family.anchor)
    pooler = any(n.startswith(encoder + "pooler.") for n in stripped.values())
    head = Head(
        keys={k: tuple(shapes[s]) for k, s in back.items()},
        prefix=head_prefix,
        hidden_size=int(shapes[embeddings][1]),
        pooler=pooler,
        class_layout=class_layout,
    )
    return head, back


class AmbiguousHead(MappingError):
    """The head's keys allow more than one task; ``readings`` names each (for ``--task auto``)."""

    readings: tuple[str, ...] = ()


def _ambiguous(
    head: Head, shapes_by_key: Mapping[str, Shape], found: list[Reading], encoder: str, family: Family
) -> MappingError:
    ways = "; ".join(f"{tasks.get(r.task, family.name).title}: {r.why} (--task {r.task})" for r in found)
    error = AmbiguousHead(
        f"the head beside the encoder ('{encoder or '<root>'}') allows more than one reading: "
        f"{_with_shapes(head.keys, shapes_by_key)} may be {ways}; or a head no transformers class computes, "
        "such as a classifier applied to <s> only (--task feature-extraction)",
        "pass --task with the reading that is what the LightningModule computed, and --global-attention with "
        "the mask it passed to the encoder (e.g. none; --task feature-extraction exports the encoder alone and "
        "lists the dropped keys)",
    )
    error.readings = tuple(dict.fromkeys(r.task for r in found))
    return error


def _custom(
    head: Head, shapes_by_key: Mapping[str, Shape], encoder: str, task: Task | None, family: Family
) -> MappingError:
    names = ", ".join(t.name for t in tasks.of_family(family.name) if not t.drops_head)
    what = (
        f"is not a {task.title} head ({task.architecture} needs {task.head_doc})"
        if task
        else "is not a head that a transformers class computes"
    )
    return MappingError(
        f"the checkpoint's head {what}: keys outside the encoder ('{encoder or '<root>'}') are "
        f"{_with_shapes(head.keys, shapes_by_key)}",
        f"pass --task feature-extraction to export the {family.base_class} alone (these keys are dropped and listed "
        f"in the report and the model card; declare --global-attention as the module passed it, e.g. "
        f"first-token); {family.short} heads transformers has: {names}"
        + ("; or --task auto to read the task from the keys" if task else ""),
    )


def plan_mapping(shapes: Mapping[str, Shape], *, task: str = "auto", prefix: str = "auto") -> KeyMapping:
    """Decide the task and where each checkpoint key goes.

    Args:
        shapes: the checkpoint's state dict keys and tensor shapes.
        task: ``auto`` to read the task from the head's keys and shapes, or a task's name.
        prefix: ``auto`` to detect the encoder's prefix, or the prefix itself (after any wrapper
            prefix), e.g. ``model.`` or ``model.longformer.``.

    Returns:
        The ``KeyMapping``: every key mapped or dropped with a reason. Not yet checked against a
        config: see ``check_mapping``.

    Raises:
        MappingError: no Longformer encoder; a head that fits no task, or the given task; a head
            that allows more than one reading under ``auto``; keys outside the encoder and head.
    """
    if not shapes:
        raise MappingError("checkpoint's state dict is empty", "pass the checkpoint of a trained model")
    wrapper, stripped = _strip_wrappers(list(shapes))
    encoder, family = find_base(stripped.values(), prefix)
    head, back = _head(stripped, shapes, encoder, family)
    head_shapes = {k: tuple(shapes[s]) for k, s in back.items()}
    reading = _choose(head, head_shapes, encoder, task, family)
    chosen = tasks.get(reading.task, family.name)

    layout = _layout(encoder, head, chosen, reading)
    result = KeyMapping(
        task=chosen.name,
        layout=layout,
        wrapper_prefix=wrapper,
        encoder_prefix=encoder,
        head_prefix=head.prefix,
        head=reading.why,
        num_labels=reading.num_labels,
        family=family.name,
    )
    target_encoder = tasks.encoder_target(chosen)
    for name, source in back.items():
        if name in reading.mapped:
            result.mapped[source] = reading.mapped[name]
    for target, parts in reading.combined.items():
        result.combined[target] = tuple(back[p] for p in parts)
        for part in parts:
            result.mapped[back[part]] = target
    head_sources = set(back.values())
    for source, name in stripped.items():
        if source in result.mapped:
            continue
        if source in head_sources:
            if chosen.drops_head:
                result.dropped[source] = (
                    f"not part of {chosen.architecture}: --task {chosen.name} exports {family.parts} alone "
                    "(kept in custom_head.safetensors)"
                )
                result.custom_head.append(source)
                continue
            raise MappingError(
                f"checkpoint key '{source}' is outside the encoder and the {chosen.title} head",
                "these would be lost; pass --prefix if they belong to the model, "
                "otherwise remove them from the state dict",
            )
        rest = name[len(encoder) :]
        if rest in reading.encoder_mapped:
            result.mapped[source] = reading.encoder_mapped[rest]
        elif rest.startswith(_POSITION_IDS):
            result.dropped[source] = _POSITION_IDS_REASON
        elif rest.startswith("pooler.") and chosen.pooler is False:
            result.dropped[source] = f"{chosen.architecture} has no pooler"
        else:
            result.mapped[source] = target_encoder + rest
    return result


def head_readings(shapes: Mapping[str, Shape], *, prefix: str = "auto") -> dict[str, object]:
    """The encoder's prefix, the keys outside it with their shapes, and every task's reading of them.

    For ``inspect``: no decision is made, nothing is raised past the encoder search.

    Raises:
        MappingError: no Longformer encoder (see ``find_encoder``).
    """
    wrapper, stripped = _strip_wrappers(list(shapes))
    encoder, family = find_base(stripped.values(), prefix)
    head, back = _head(stripped, shapes, encoder, family)
    return {
        "family": family.name,
        "encoder_prefix": wrapper + encoder,
        "head_keys": {back[k]: list(v) for k, v in sorted(head.keys.items())},
        "readings": [
            {"task": r.task, "exact": r.exact, "why": r.why, "num_labels": r.num_labels}
            for r in tasks.readings(head, family.name)
            if r.exact or not tasks.get(r.task, family.name).drops_head
        ],
    }


def _choose(head: Head, head_shapes: Mapping[str, Shape], encoder: str, task: str, family: Family) -> Reading:
    if task != "auto":
        if not tasks.supports(family.name, task):
            other = tasks.get(task)
            names = ", ".join(t.name for t in tasks.of_family(family.name))
            raise MappingError(
                f"--task {task} ({other.architecture}) is {FAMILIES[other.family].a()} task, but the checkpoint "
                f"is {family.a()} model (its base model is at '{encoder or '<root>'}')",
                f"pass --task auto, or a task {family.base_class.removesuffix('Model')} has: {names}",
            )
        chosen = tasks.get(task, family.name)
        found = chosen.match(head)
        if not found:
            raise _custom(head, head_shapes, encoder, chosen, family)
        return found[0]
    found = [r for r in tasks.readings(head, family.name) if r.exact or not tasks.get(r.task, family.name).drops_head]
    exact = [r for r in found if r.exact]
    if len(exact) == 1:
        return exact[0]
    if found:
        raise _ambiguous(head, head_shapes, found, encoder, family)
    raise _custom(head, head_shapes, encoder, None, family)


def _layout(encoder: str, head: Head, task: Task, reading: Reading) -> str:
    if not head.keys:
        return f"{FAMILIES[task.family].parts} alone, at `{encoder or '<root>'}`"
    if head.class_layout and reading.exact:
        where = f"as `{head.prefix.rstrip('.')}`" if head.prefix else "as bare keys"
        return f"{'wrapped' if head.prefix else 'bare'}: {task.architecture} {where}"
    return f"sibling: encoder at `{encoder or '<root>'}`, head {reading.why}"


def check_mapping(result: KeyMapping, shapes: Mapping[str, Shape], expected: Mapping[str, Shape], task: Task) -> None:
    """Check the mapped keys against the target class's keys and shapes (from the base config).

    Tied keys (``Task.tied``) may be absent from the checkpoint: transformers ties them on loading.

    Raises:
        MappingError: keys the config does not have, keys the model needs that the checkpoint
            lacks, or a shape that disagrees with the base config.
    """
    targets: dict[str, str] = {}
    for source, target in result.mapped.items():
        targets.setdefault(target, source)
    extra = sorted(set(targets) - set(expected))
    missing = sorted(set(expected) - set(targets) - set(task.tied))
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
            else "pass the checkpoint of the whole model (or --prefix if its keys are stored elsewhere)"
        )
        present = f"; it has the encoder under '{result.encoder_prefix or '<root>'}'"
        raise MappingError(
            f"checkpoint lacks {len(missing)} weight(s) that {task.architecture} needs{detail}: "
            f"{_list(missing)}{present}",
            fix,
        )
    wrong = []
    for target, source in sorted(targets.items()):
        parts = result.combined.get(target)
        got = (sum(shapes[p][0] for p in parts), *shapes[parts[0]][1:]) if parts else tuple(shapes[source])
        if got != tuple(expected[target]):
            wrong.append((target, source, got))
    if wrong:
        target, source, got = wrong[0]
        more = f" ({len(wrong)} tensors disagree; the first:)" if len(wrong) > 1 else ""
        raise MappingError(
            f"checkpoint does not fit the base config{more} tensor '{source}' has shape {list(got)} "
            f"but the config needs {list(expected[target])} for '{target}'",
            "pass --base-model with the config the model was trained from (hidden size, vocabulary, positions)",
        )


def _layer_count(keys: Iterable[str]) -> int:
    # (stack, index) pairs: LED's encoder and decoder layers are counted apart
    layers = set()
    for k in keys:
        parts = k.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in ("layer", "layers") and parts[i + 1].isdigit():
                layers.add((".".join(parts[:i]), int(parts[i + 1])))
                break
    return len(layers)
