"""Compare the config a conversion uses with every config value the checkpoint's hyper-parameters record.

A wrong config that both the folder and the check's reference use passes the check yet computes
something else than what was trained; so the recorded values (a whole config, or single fields
such as ``attention_window``) are compared first."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import MappingError
from ..reading import hparams as hparams_walk
from ..reading.base_model import HPARAMS_BASE
from ..reading.hparams import _where, _whole_config, recorded_config
from ..registry.families import Family, family_of_config
from ..text import listing


def _plain(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, int) for v in value)


def recorded_fields(hparams: Mapping[str, Any], family: Family) -> list[tuple[str, str, Any, bool]]:
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


def _per_layer(value: Any, layers: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * layers


def _agrees(name: str, recorded: Any, config: Any, whole: bool) -> bool:
    """Whether a recorded value agrees with the config's (``whole``: it sits in a whole config)."""
    family = family_of_config(config)
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
    for where, name, value, whole in recorded_fields(hparams, family_of_config(config)):
        if not hasattr(config, name):
            continue
        if not _agrees(name, value, config, whole):
            have = getattr(config, name)
            lines.append(f"{name} is {_value(value)} in {where} but {_value(have)} in the base config")
    return lines


def one_sided_window(hparams: Mapping[str, Any], config: Any) -> dict[str, Any] | None:
    """A single recorded ``attention_window`` that agrees with the config only as its one-sided half.

    allenai's scripts record the one-sided window (256) where transformers' config holds the
    two-sided one (512), so such a value agrees (see ``config_disagreements``); but a module that
    really trained with that smaller window would pass the check too (the reference uses the same
    config), so the reading is reported rather than made silently.

    Returns:
        ``{"where": "hyper-parameter 'args.attention_window'", "recorded": 256, "config": [512, ...]}``,
        or ``None`` when no single value was read so.
    """
    family = family_of_config(config)
    name = family.fields["attention_window"]
    want = _per_layer(getattr(config, name, None), int(family.value(config, "layers")))
    for where, field, value, whole in recorded_fields(hparams, family):
        if field != name or whole or isinstance(value, (str, list, tuple)) or want == [int(value)] * len(want):
            continue
        if _agrees(name, value, config, whole):
            return {"where": where, "recorded": int(value), "config": want}
    return None


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
    for where, name, value, whole in recorded_fields(hparams, family_of_config(config)):
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
    family = family_of_config(config)
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
    shown = listing(lines, 4, sep="; ", more="; and {} more")
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
