"""Choose which of a checkpoint's keys are the model, and check the config it records.

Checkpoints from the wild hold more than one model's weights, or keys that are no model's weights:

- several copies of the model (an EMA or SWA average beside the raw weights, a teacher and a
  student, a frozen reference model): the user picks one with ``--copy``, the others are dropped
  and listed with the reason;
- keys that are not weights (a weighted loss's ``loss_fn.weight``): the user drops them with
  ``--drop``, and the report lists them;
- an encoder saved without some of its parts (frozen embeddings left out of the state dict): the
  error names what is present and what is missing.

And the hyper-parameters often record the config the model was trained with (a whole config, or
single fields such as ``attention_window``): it is compared with the base config, because a wrong
config that both the folder and the check's reference use passes the check yet computes something
else than what was trained.

Pure where it can be: the key functions take the state dict's shapes (or names) only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hparams as hparams_walk
from . import tasks
from .checkpoint import Checkpoint, Inert
from .choices import PROBLEM_TYPES
from .errors import BaseModelError, MappingError
from .mapping import _strip_wrappers
from .pretrained import CONFIG_FILE

Shape = tuple[int, ...]

#: Reason given for keys named by ``--drop``.
DROP_REASON = "dropped by --drop"
#: Reason given for keys named by ``--keep``.
KEEP_REASON = "kept beside the model in custom_head.safetensors by --keep (the class does not compute it)"
#: The ``--copy`` value that selects the copy at the root of the state dict.
ROOT_COPY = "."
#: The ``--base-model`` value that takes the config from the checkpoint's hyper-parameters.
HPARAMS_BASE = "hparams"

_ANCHOR = "embeddings.word_embeddings.weight"
_GLOBAL = ".attention.self.query_global."
_ENCODER_PARTS = {
    "embeddings": "the embeddings",
    "encoder": "the attention layers",
    "pooler": "the pooler",
}
_EMBEDDINGS = ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")


def _shown(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    text = ", ".join(f"'{k}'" for k in keys[:limit])
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _tops(names: Iterable[str]) -> str:
    return _shown({n.split(".")[0] + "." for n in names})


# --- --drop and --keep ---------------------------------------------------------------------------


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
    _, stripped = _strip_wrappers(names)
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


# --- copies of the model ------------------------------------------------------------------------


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
    return sorted({n[: -len(_ANCHOR)] for n in stripped if n == _ANCHOR or n.endswith("." + _ANCHOR)})


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
    _, stripped = _strip_wrappers(names)
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


# --- an encoder with parts missing --------------------------------------------------------------


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
    _, stripped = _strip_wrappers(names)
    if _encoders(stripped.values()):
        return
    marks = [n for n in stripped.values() if _GLOBAL in "." + n and ".layer." in "." + n]
    if not marks:
        if names and not any(_is_encoder_part(n) for n in stripped.values()):
            raise MappingError(
                f"no Longformer encoder in the checkpoint: it holds {len(names)} keys ({_shown(names)}) and none of "
                f"an encoder (no '{_ANCHOR}', no attention layers)",
                "if the module froze the encoder and saved only what it trained (strict_loading=False), save a "
                "checkpoint with the whole model's state dict; otherwise pass the checkpoint of a Longformer model",
            )
        return
    prefix = min({m[: ("." + m).index(".encoder.layer.")] for m in marks if ".encoder.layer." in "." + m}, default="")
    under = [n[len(prefix) :] for n in stripped.values() if n.startswith(prefix)]
    layers = {n.split(".")[2] for n in under if n.startswith("encoder.layer.")}
    present = sorted({n.split(".")[0] for n in under} & set(_ENCODER_PARTS))
    shown = ", ".join(
        _ENCODER_PARTS[p] + (f" ({len(layers)} layers, with global attention)" if p == "encoder" else "")
        for p in present
    )
    missing = [f"{prefix}embeddings.{e}" for e in _EMBEDDINGS if f"{prefix}embeddings.{e}" not in stripped.values()]
    raise MappingError(
        f"the checkpoint has part of a Longformer encoder under '{prefix or '<root>'}': {shown}, "
        f"but not the embeddings (missing {_shown(missing)})",
        "the module saved only the weights it trained (frozen embeddings left out, as with strict_loading=False); "
        "save a checkpoint with the whole model's state dict, or add the missing tensors from the base weights",
    )


def _is_encoder_part(name: str) -> bool:
    parts = name.split(".")
    return any(p in ("embeddings", "encoder", "layer", "attention") for p in parts)


# --- keys that are not part of the model --------------------------------------------------------


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

    from . import tasks
    from .mapping import AmbiguousHead, plan_mapping

    _, stripped = _strip_wrappers(list(shapes))
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
    listed = ", ".join(f"{k!r} {list(shapes[k])}" for k in sorted(keys)[:6])
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


# --- the whole selection ------------------------------------------------------------------------


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


# --- the config the checkpoint records ----------------------------------------------------------

# The config fields compared are the family's (``tasks.Family.compared``: those that change what the
# model computes); a single hyper-parameter is compared on ``Family.single_fields()`` only (a training
# script's ``args.attention_window``).


def _is_config(value: Mapping[Any, Any], qualname: str) -> bool:
    families = tasks.FAMILIES.values()
    if qualname.endswith(("RobertaConfig", *(f.config_class for f in families))):
        return True
    if value.get("model_type") in ("roberta", *(f.model_type for f in families)):
        return True
    return any(_marks(f) <= set(value) for f in families)


def _marks(family: tasks.Family) -> set[str]:
    # the fields that together say "a whole config of this family" when model_type is absent
    return {family.fields[role] for role in ("attention_window", "hidden_size", "layers")}


def _plain(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, int) for v in value)


def _whole_config(hparams: Mapping[str, Any]) -> hparams_walk.Level | None:
    for level in hparams_walk.levels(hparams):
        if _is_config(level.values, level.qualname):
            return level
    return None


def recorded_config(hparams: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A whole model config the hyper-parameters hold, and where; ``None`` when they hold none.

    Looks at every level of the hyper-parameters, shallowest first, whatever wraps it (see
    ``hparams.levels``: dicts, Namespaces, config objects or their inert placeholders, and
    LightningCLI's ``class_path``/``init_args``), for a dict or object with ``model_type``
    ``longformer`` or ``led``, or with the fields that make one (``attention_window``,
    ``hidden_size`` and ``num_hidden_layers``; LED's ``attention_window``, ``d_model`` and
    ``encoder_layers``), or a ``LongformerConfig`` or ``LEDConfig`` object. (A training config such
    as Hydra's ``DictConfig`` is not a model config, whatever its class is called.)

    Returns:
        The config's plain values (no objects), and a name for it in messages.
    """
    level = _whole_config(hparams)
    if level is None:
        return None
    plain = {str(k): v for k, v in level.values.items() if not isinstance(v, Inert) and _jsonable(v)}
    if "model_type" not in plain:
        family = tasks.family_of_config_class(level.qualname)
        if family is not None:
            plain["model_type"] = family.model_type
    return plain, _where(level)


def _where(level: hparams_walk.Level) -> str:
    # a transformers folder's config.json is read as a hyper-parameter of that name
    return f"the checkpoint's {CONFIG_FILE}" if level.path == CONFIG_FILE else level.where()


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, (str, int)) and _jsonable(v) for k, v in value.items())
    return False


def recorded_fields(hparams: Mapping[str, Any], family: tasks.Family) -> list[tuple[str, str, Any, bool]]:
    """(where, field, value, inside a whole config) for every config value the hyper-parameters record.

    The fields of ``Family.compared`` of the whole config (see ``recorded_config``), then single
    hyper-parameters named like ``Family.single_fields()`` at any other level (an ``args`` Namespace, a
    LightningCLI argument's ``init_args``).
    """
    found: list[tuple[str, str, Any, bool]] = []
    whole = _whole_config(hparams)
    if whole is not None:
        values = whole.values
        found += [(_where(whole), f, values[f], True) for f in family.compared if f in values and _plain(values[f])]
    for level in hparams_walk.levels(hparams):
        if whole is not None and level.path == whole.path:
            continue
        for name in family.single_fields():
            if name in level.values and _plain(level.values[name]):
                path = f"{level.path}.{name}" if level.path else name
                found.append((f"hyper-parameter '{path}'", name, level.values[name], False))
    return found


def recorded_problem_type(hparams: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ``problem_type`` the hyper-parameters record (shallowest first, at any level), and where."""
    for level in hparams_walk.levels(hparams):
        value = level.values.get("problem_type")
        if isinstance(value, str) and value in PROBLEM_TYPES:
            path = f"{level.path}.problem_type" if level.path else "problem_type"
            return value, f"hyper-parameter '{path}'"
    return None


def _per_layer(value: Any, layers: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * layers


def _agrees(name: str, recorded: Any, config: Any, whole: bool) -> bool:
    """Whether a recorded value agrees with the config's (``whole``: it sits in a whole config)."""
    family = tasks.family_of_config(config)
    have = getattr(config, name, None)
    if name == family.fields["attention_window"]:
        layers = int(family.value(config, "layers"))
        want = _per_layer(have, layers)
        if isinstance(recorded, str):
            return False
        got = _per_layer(recorded, len(want) if not isinstance(recorded, (list, tuple)) else len(recorded))
        if got == want:
            return True
        # allenai's scripts record the one-sided window (256) where transformers' config is two-sided (512)
        return not whole and not isinstance(recorded, (list, tuple)) and all(w == 2 * got[0] for w in want)
    if name == family.fields["max_positions"] and family.offset_positions and not whole and isinstance(recorded, int):
        # a script's "max length" may leave out the padding offset that RoBERTa-style positions add
        offset = int(family.value(config, "pad_token_id") or 0) + 1
        return recorded in (have, have - offset)
    if isinstance(recorded, float) or isinstance(have, float):
        try:
            return math.isclose(float(recorded), float(have), rel_tol=1e-6)
        except (TypeError, ValueError):
            return False
    return recorded == have


def config_disagreements(hparams: Mapping[str, Any], config: Any) -> list[str]:
    """One line per config value the hyper-parameters record that the config disagrees with.

    Compares every field of the family's ``Family.compared`` of a whole config the hyper-parameters hold
    (see ``recorded_config``), and single hyper-parameters named like ``Family.single_fields()`` at any
    level (an ``args`` Namespace, also as an inert placeholder; see ``recorded_fields``). A single
    ``attention_window`` that is half the config's agrees: allenai's scripts record the one-sided
    window where transformers' config is two-sided.

    Args:
        hparams: the checkpoint's hyper-parameters (``Checkpoint.hparams``).
        config: the ``LongformerConfig`` the conversion uses.

    Returns:
        Lines such as ``attention_window is [8, 8] in hyper-parameter 'config' but [16, 16] in the
        base config``; empty when all agree.
    """
    lines = []
    for where, name, value, whole in recorded_fields(hparams, tasks.family_of_config(config)):
        if not hasattr(config, name):
            continue
        if not _agrees(name, value, config, whole):
            have = getattr(config, name)
            lines.append(f"{name} is {_value(value)} in {where} but {_value(have)} in the base config")
    return lines


def recorded_config_check(
    hparams: Mapping[str, Any], config: Any, *, file: str = "config.json"
) -> tuple[list[str], list[str]]:
    """Compare a folder's config with every config value the hyper-parameters record (the check's stage).

    Args:
        hparams: the checkpoint's hyper-parameters.
        config: the folder's config, as transformers loads its ``config.json``.
        file: the file ``config`` was read from, for messages.

    Returns:
        The fields compared (``field (where)``), and one line per disagreement naming the file, the
        field and both values.
    """
    compared, lines = [], []
    for where, name, value, whole in recorded_fields(hparams, tasks.family_of_config(config)):
        if not hasattr(config, name):
            continue
        compared.append(f"{name} ({where})")
        if not _agrees(name, value, config, whole):
            lines.append(f"{file}: {name} is {_value(getattr(config, name))} where {where} records {_value(value)}")
    return compared, lines


def _value(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else repr(value) if isinstance(value, str) else str(value)


def config_file_differences(folder_config: Mapping[str, Any], config: Any) -> list[str]:
    """One line per ``Family.compared`` value where a folder's ``config.json`` differs from the reference config.

    For ``verify``: names the cause when a folder's config was changed after conversion.
    """
    lines = []
    family = tasks.family_of_config(config)
    for name in family.compared:
        if name in folder_config and hasattr(config, name):
            mine, theirs = folder_config[name], getattr(config, name)
            if name == family.fields["attention_window"]:
                layers = int(family.value(config, "layers"))
                mine, theirs = _per_layer(mine, layers), _per_layer(theirs, layers)
            if mine != theirs:
                lines.append(
                    f"the folder's config.json has {name} {_value(mine)} where the reference has {_value(theirs)}"
                )
    return lines


class ConfigDisagreement(MappingError):
    """The config a conversion uses disagrees with the config values the checkpoint records.

    Attributes:
        lines: one line per disagreement (see ``config_disagreements``).
    """

    lines: list[str]


def check_recorded_config(hparams: Mapping[str, Any], config: Any, *, base_spec: str) -> None:
    """Refuse a base config that disagrees with what the checkpoint records about its config.

    Raises:
        ConfigDisagreement: naming each field and both values; the fix offers ``--base-model
            hparams`` when the hyper-parameters hold a whole config.
    """
    lines = config_disagreements(hparams, config)
    if not lines:
        return
    shown = "; ".join(lines[:4]) + (f"; and {len(lines) - 4} more" if len(lines) > 4 else "")
    whole = recorded_config(hparams) is not None
    fix = (
        f"pass --base-model {HPARAMS_BASE} to use the config the checkpoint records (it holds a whole config), "
        "or --base-model with the config the model was trained with"
        if whole
        else "pass --base-model with the config the model was trained with"
    )
    error = ConfigDisagreement(
        f"the base config ({base_spec}) does not compute what the checkpoint was trained with: {shown}", fix
    )
    error.lines = lines
    raise error


def base_from_hparams(ckpt: Checkpoint) -> Any:
    """A base model whose config is the one the checkpoint's hyper-parameters hold (no tokenizer files).

    Returns:
        A ``base_model.BaseModel`` with spec ``hparams``.

    Raises:
        BaseModelError: the hyper-parameters hold no whole config.
    """
    from .base_model import BaseModel

    found = recorded_config(ckpt.hparams)
    if found is None:
        names = ", ".join(ckpt.hyper_parameters) or "none"
        raise BaseModelError(
            f"--base-model {HPARAMS_BASE} needs a model config in the checkpoint's hyper-parameters, "
            f"and they hold none (hyper-parameters: {names})",
            "pass --base-model with a folder or Hub id holding the config the model was trained with",
        )
    config, _ = found
    config = {k: v for k, v in config.items() if not k.startswith("_") or k == "_name_or_path"}
    # a recorded config without model_type: the family whose fields it has (LED's d_model, encoder_layers)
    family = next((f for f in tasks.FAMILIES.values() if _marks(f) <= set(config)), tasks.FAMILIES["longformer"])
    config.setdefault("model_type", family.model_type)
    return BaseModel(spec=HPARAMS_BASE, folder=Path(ckpt.path).parent, config=config)
