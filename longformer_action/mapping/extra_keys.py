"""Explain a mapping that fails only because of keys that are not model weights (and name the ``--drop``
or ``--keep`` that leaves them out)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import MappingError
from ..registry import tasks
from ..text import listing
from .keys import strip_wrappers
from .selection import Shape, _is_encoder_part, find_crfs


def explain_extra_keys(shapes: Mapping[str, Shape], error: MappingError, *, task: str, prefix: str) -> MappingError:
    """A clearer error when the mapping fails only because of keys that are not model weights.

    Tries the mapping again without each top-level attribute (and each pair) that holds no part of
    the encoder: when exactly one such removal leaves a head that a transformers class computes,
    the error names those keys and the ``--drop`` options that leave them out.

    Args:
        shapes: the keys and shapes the mapping refused.
        error: the mapping's error.
        task, prefix: the ``--task`` and ``--prefix`` the mapping ran with.

    Returns:
        The clearer error, or ``error`` itself when no removal helps.
    """
    from itertools import combinations

    from .layout import AmbiguousHead, plan_mapping

    _, stripped = strip_wrappers(list(shapes))
    groups: dict[str, list[str]] = {}
    for source, name in stripped.items():
        groups.setdefault(name.split(".")[0], []).append(source)
    candidates = [g for g, keys in groups.items() if not any(_is_encoder_part(stripped[k]) for k in keys)]
    found = []
    for size in (1, 2):
        for chosen in combinations(sorted(candidates), size):
            left = {k: v for k, v in shapes.items() if stripped[k].split(".")[0] not in chosen}
            if not left:
                continue
            try:
                mapping = plan_mapping(left, task=task, prefix=prefix)
            except AmbiguousHead as exc:  # without them, a head with several readings: --task decides
                found.append((chosen, exc.readings))
                continue
            except MappingError:
                continue
            if not tasks.get(mapping.task).drops_head:
                found.append((chosen, mapping))
        if found:
            break
    if len(found) != 1:
        return error
    chosen, mapping = found[0]
    keys = [k for g in chosen for k in groups[g]]
    prefixes = [f"{g}{'.' if len(groups[g]) > 1 or groups[g][0] != g else ''}" for g in chosen]
    listed = listing([f"{k!r} {list(shapes[k])}" for k in sorted(keys)], 6)
    crfs = find_crfs({stripped[k]: shapes[k] for k in keys})
    crf = (
        f"; {'they are' if 3 * len(crfs) == len(keys) else 'among them is'} a CRF's transitions over "
        f"{next(iter(crfs.values()))} tags, which decode the head's logits (Viterbi decoding, not argmax)"
        if crfs
        else ""
    )
    ambiguous = isinstance(mapping, tuple)
    if ambiguous:
        what = f"the head beside the encoder may be {' or '.join(mapping)}"
        cls = "the task's class"
        task_hint = (
            f"; with either, the --task the module computed ({', '.join(f'--task {t}' for t in mapping)}) and the "
            "--global-attention it passed"
        )
    else:
        entry = tasks.get(mapping.task)
        what = f"the checkpoint is a {entry.title} model ({entry.architecture}, {mapping.head})"
        cls, task_hint = entry.architecture, ""
    keep = (
        f"{' '.join(f'--keep {p}' for p in prefixes)} to keep them: the folder is {cls}, and these are kept beside "
        "it in custom_head.safetensors with their shapes (your code applies them)"
    )
    drop = (
        f"{' '.join(f'--drop {p}' for p in prefixes)} if they are not model weights (a loss's class weights, a "
        "metric's state): they are left out"
        + (
            " (a CRF's are: without them the tags are the argmax of the logits, not what the module predicted)"
            if crfs
            else ""
        )
    )
    ways = [keep, drop] if crfs else [drop, keep]
    return MappingError(
        f"checkpoint keys {listed} are neither the encoder nor the head: without them {what}{crf}",
        f"pass {ways[0]}; {ways[1]}{task_hint}; or --task feature-extraction to export the encoder alone, with the "
        "head and these in custom_head.safetensors; the report and the model card list them",
    )
