"""``verify``: check an existing folder against the checkpoint it was converted from."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..checking.check import run_check, saved_dtype
from ..errors import CheckFailed, ConversionError, MappingError
from ..filesystem import check_utf8_name, raise_read_problem
from ..mapping.plan import MapOptions
from ..mapping.recorded import ConfigDisagreement, config_file_differences
from ..progress import Progress
from ..publishing.recorded_files import changed_files
from ..publishing.report import write_json
from ..reading.base_model import BaseModel
from ..registry import tasks
from ..registry.files import REPORT_NAME
from ..writing.claim import check_apart
from .stages import (
    Run,
    check_failed,
    check_line,
    inputs_read,
    plan,
    read,
    report_on_failure,
    resolve_base,
)


def verify(
    model_dir: Path,
    checkpoint: Path,
    *,
    base_model: str | None = None,
    atol: float | None = None,
    report: Path | None = None,
    trust_checkpoint: bool = False,
    prefix: str = "auto",
    lightning_module: str | None = None,
    global_attention: str | None = None,
    copy: str | None = None,
    drop: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
    adapter_config: Path | None = None,
    progress: Progress,
) -> dict[str, Any]:
    """Check an existing folder against a checkpoint; return the report.

    The task is the folder's (``architectures`` in its ``config.json``). The reference runs with
    ``base_model``'s config when given, else with the folder's own; the global attention is
    ``global_attention`` when given, else what the folder's ``conversion-report.json`` records.

    Raises:
        PathConflict: ``report`` would replace the checkpoint, a file of the folder or of the base model's
            folder, or the adapter config; checked before any work.
        ConversionError: the folder or checkpoint cannot be read.
        CheckFailed: the check failed.
    """
    run = Run(command="verify", timings=progress.timings)
    check_apart([("--report", report)], inputs_read(checkpoint, base_model, adapter_config, model=model_dir))
    if report is not None:
        check_utf8_name(report, "--report")
    with report_on_failure(run, report):
        raise_read_problem(model_dir, "folder", "--model", ConversionError)
        if not (model_dir / "config.json").is_file():
            raise ConversionError(
                f"{model_dir} has no config.json", "pass the folder that convert or save_pretrained wrote"
            )
        folder_config = json.loads((model_dir / "config.json").read_text())
        architecture = (folder_config.get("architectures") or [None])[0]
        task = tasks.by_architecture(architecture or "")
        if task is None:
            raise ConversionError(
                f"{model_dir} holds a {architecture or 'model without architectures'}, not a Longformer or LED class "
                "this tool converts",
                "pass a folder whose config.json names one of " + ", ".join(t.architecture for t in tasks.ENTRIES),
            )
        if global_attention is None:
            global_attention = _recorded_global_attention(model_dir)
        if copy is None and not drop and not keep:
            copy, drop, keep = _recorded_selection(model_dir)
        run.ckpt = ckpt = read(checkpoint, trust_checkpoint, progress)
        recorded = _recorded_source(model_dir)
        other = (
            f"{checkpoint} is not the checkpoint {model_dir} was converted from (its report names SHA-256 "
            f"{recorded[:16]}..., this file has {ckpt.sha256[:16]}...)"
            if recorded and recorded != ckpt.sha256
            else None
        )
        with progress.stage("base-model", "Resolve the reference config") as stage:
            run.base = base = resolve_base(base_model, ckpt) if base_model else _folder_base(model_dir)
            stage.detail = base.spec
        with (
            progress.stage("map", "Map the keys") as stage,
            _folder_config_fails(base_model or lightning_module),
            _checkpoint_does_not_fit(task, other),
        ):
            labels = tuple(folder_config["id2label"][str(i)] for i in range(len(folder_config.get("id2label") or {})))
            options = MapOptions(
                task=task.name,
                prefix=prefix,
                labels=labels if task.labels and labels and not labels[0].startswith("LABEL_") else None,
                problem_type=folder_config.get("problem_type") if task.problem_type else None,
                global_attention=global_attention,
                copy=copy,
                drop=drop,
                keep=keep,
                adapter_config=adapter_config,
                labels_from="the folder's config.json",
            )
            run.plan = planned = plan(ckpt, base, options, stage, progress)
            if task.labels and labels and planned.facts.num_labels != len(labels):
                raise MappingError(
                    f"the folder's config.json names {len(labels)} labels but the head has "
                    f"{planned.facts.num_labels} outputs"
                )
        stored = saved_dtype(model_dir)
        source = Counter(str(t.dtype).removeprefix("torch.") for t in ckpt.state_dict.values() if t.is_floating_point())
        dtype = "keep" if source and source.most_common(1)[0][0] == stored else stored
        run.dtype_requested, run.dtype_saved = dtype, stored
        with (
            progress.stage("check", "Check the folder against the checkpoint") as stage,
            _folder_config_fails(base_model or lightning_module),
        ):
            run.check = check = run_check(
                model_dir,
                ckpt,
                planned,
                dtype=dtype,
                atol=atol,
                lightning_module=lightning_module,
                base=base if base_model else None,
            )
            changed = changed_files(model_dir, _recorded(model_dir), folder_config, task)  # part of the stage's verdict
            if changed:
                check.failures += [line for _, line in changed]
                check.passed = False
            stage.detail = check_line(check)
        if not check.passed and base_model:
            check.failures[:0] = config_file_differences(folder_config, planned.config)
        result = run.report()
        if report is not None:
            write_json(report, result, option="--report")
        if not check.passed:
            if other:
                raise check_failed(check, other, result, "pass the checkpoint the folder was converted from")
            names = sorted({name for name, _ in changed})
            restore = (
                f"restore {_and(names)} as the conversion wrote {'it' if len(names) == 1 else 'them'} (its report, "
                f"{REPORT_NAME}, holds each file's SHA-256), or convert the checkpoint again"
                if names
                else None
            )
            raise check_failed(check, f"{model_dir} is not a faithful conversion", result, restore)
    return result


def _recorded_source(folder: Path) -> str | None:
    sha256 = (_recorded(folder).get("source") or {}).get("sha256")
    return str(sha256) if sha256 else None


@contextlib.contextmanager
def _checkpoint_does_not_fit(task: tasks.Task, other: str | None) -> Iterator[None]:
    # verify reads the task from the folder: a checkpoint that does not fit it is not the folder's source
    try:
        yield
    except MappingError as exc:
        if isinstance(exc, ConfigDisagreement):
            raise
        text = exc.message.rstrip(". ")
        raise MappingError(
            f"{other or 'the checkpoint does not fit the folder'}: the folder is {task.name} ({task.architecture}), "
            f"and {text}",
            "pass the checkpoint this folder was converted from, or convert this checkpoint with "
            "`longformer-convert convert`",
        ) from None


@contextlib.contextmanager
def _folder_config_fails(elsewhere: str | None) -> Iterator[None]:
    # without --base-model (or --lightning-module) the reference runs with the folder's own config:
    # if that config disagrees with what the checkpoint records, or cannot run the checkpoint's
    # weights, the folder is at fault: a failed check
    try:
        yield
    except CheckFailed:
        raise
    except ConfigDisagreement as exc:
        if elsewhere:
            raise
        lines = "; ".join(line.replace("in the base config", "in the folder's config.json") for line in exc.lines)
        raise CheckFailed(
            f"the folder's config.json does not compute what the checkpoint was trained with: {lines}",
            "convert the checkpoint again (--base-model hparams uses the config the checkpoint records)",
        ) from None
    except MappingError:
        raise
    except ConversionError as exc:
        if elsewhere:
            raise
        text = exc.message.rstrip(". ")
        raise CheckFailed(
            f"the folder's config.json cannot run the checkpoint's weights (no --base-model: the reference uses it): "
            f"{text}",
            "convert the checkpoint again, or restore the folder's config.json (see its conversion-report.json)",
        ) from None


def _recorded(folder: Path) -> dict[str, Any]:
    try:
        report = json.loads((folder / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _recorded_selection(folder: Path) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """The ``--copy``, ``--drop`` and ``--keep`` the folder was converted with (its report), for ``verify``."""
    chosen = ((_recorded(folder).get("conversion") or {}).get("selection")) or {}
    return chosen.get("copy"), tuple(chosen.get("drop") or ()), tuple(chosen.get("keep") or ())


def _and(names: list[str]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]


def _recorded_global_attention(folder: Path) -> str:
    attention = ((_recorded(folder).get("conversion") or {}).get("global_attention")) or {}
    return str(attention.get("convention") or "default")


def _folder_base(folder: Path) -> BaseModel:
    return BaseModel(spec=str(folder), folder=folder, config=json.loads((folder / "config.json").read_text()))
