"""Check the folder's settings files: ``generation_config.json`` against the base's, ``config.json``
against what the checkpoint's hyper-parameters record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..reading.checkpoint import Checkpoint
from ..registry.families import FAMILIES
from ..registry.tasks import Task
from ..text import described
from .result import NamedCheck


def generation_check(model: Any, base: Any) -> NamedCheck | None:
    """The generation settings the folder's model loaded, field by field against the base's effective ones.

    ``None`` for a class that does not generate. Without a base only ``_from_model_config`` is checked.
    """
    from ..registry.files import GENERATION_CONFIG_NAME
    from ..writing.folder import base_generation
    from ..writing.generation import compare_settings, non_default

    if not model.can_generate():
        return None
    if base is None:
        failures = compare_settings(model.generation_config, model.generation_config)
        return NamedCheck(
            "generation settings",
            [GENERATION_CONFIG_NAME],
            not failures,
            "not compared with a base model's (no --base-model)",
            failures,
        )
    theirs = base_generation(base)
    failures = compare_settings(model.generation_config, theirs)
    shown = ", ".join(f"{k} {v!r}" for k, v in non_default(theirs).items())
    return NamedCheck(
        "generation settings",
        [GENERATION_CONFIG_NAME],
        not failures,
        f"every field equal to the base's effective settings ({shown or 'the defaults'})",
        failures,
    )


def recorded_config_check(folder: Path, ckpt: Checkpoint, task: Task) -> NamedCheck:
    """The folder's ``config.json`` against every config value the checkpoint's hyper-parameters record."""
    from ..mapping.recorded import recorded_config_check as compare
    from ..reading.hparams import recorded_problem_type

    try:
        config = FAMILIES[task.family].config_cls().from_pretrained(folder)
    except Exception as exc:  # a config.json transformers cannot read fails the check
        return NamedCheck("recorded config", ["config.json"], False, "", [f"config.json: {described(exc)}"])
    compared, failures = compare(ckpt.hparams, config)
    recorded = recorded_problem_type(ckpt.hparams) if task.problem_type else None
    if recorded is not None:
        compared.append(f"problem_type ({recorded[1]})")
        if config.problem_type != recorded[0]:
            failures.append(
                f"config.json: problem_type is {config.problem_type!r} where {recorded[1]} records {recorded[0]!r}"
            )
    if not compared:
        return NamedCheck("recorded config", ["config.json"], None, "the hyper-parameters record no config field")
    return NamedCheck("recorded config", ["config.json"], not failures, "; ".join(compared), failures)
