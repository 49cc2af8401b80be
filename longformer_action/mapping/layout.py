"""Plan the key mapping: read the head as a task, map every key, and check the keys against the class.

Pure: works on key names and shapes only. A key is either mapped to a target key, or dropped for a
stated reason; anything else is an error, because a converter that drops unknown keys silently
produces a model that runs and answers nonsense."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import MappingError
from ..registry import tasks
from ..registry.families import FAMILIES, Family
from ..registry.tasks import Task
from .heads import MATCHERS, Head, Reading, readings
from .keys import (
    _POSITION_IDS,
    _POSITION_IDS_REASON,
    KeyMapping,
    Shape,
    _list,
    _with_shapes,
    locate_base_model,
    strip_wrappers,
)


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
    wrapper, stripped = strip_wrappers(list(shapes))
    encoder, family = locate_base_model(stripped.values(), prefix)
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
    target_encoder = tasks.base_model_prefix(chosen)
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
    wrapper, stripped = strip_wrappers(list(shapes))
    encoder, family = locate_base_model(stripped.values(), prefix)
    head, back = _head(stripped, shapes, encoder, family)
    return {
        "family": family.name,
        "encoder_prefix": wrapper + encoder,
        "head_keys": {back[k]: list(v) for k, v in sorted(head.keys.items())},
        "readings": [
            {"task": r.task, "exact": r.exact, "why": r.why, "num_labels": r.num_labels}
            for r in readings(head, family.name)
            if r.exact or not tasks.get(r.task, family.name).drops_head
        ],
    }


def _choose(head: Head, head_shapes: Mapping[str, Shape], encoder: str, task: str, family: Family) -> Reading:
    if task != "auto":
        if not tasks.supports(family.name, task):
            other = tasks.get(task)
            names = ", ".join(t.name for t in tasks.of_family(family.name))
            raise MappingError(
                f"--task {task} ({other.architecture}) is {FAMILIES[other.family].with_article()} task, but the "
                f"checkpoint is {family.with_article()} model (its base model is at '{encoder or '<root>'}')",
                f"pass --task auto, or a task {family.base_class.removesuffix('Model')} has: {names}",
            )
        chosen = tasks.get(task, family.name)
        found = MATCHERS[chosen.name](head)
        if not found:
            raise _custom(head, head_shapes, encoder, chosen, family)
        return found[0]
    found = [r for r in readings(head, family.name) if r.exact or not tasks.get(r.task, family.name).drops_head]
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
