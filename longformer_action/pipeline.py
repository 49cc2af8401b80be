"""The commands' work, stage by stage: read, resolve, map, save, check, report, publish.

Each stage logs one line; a failure at any stage leaves nothing at ``--output`` and, when asked
for, still writes the report.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import adapters, selection, tasks
from .base_model import BaseModel, resolve_base_model
from .checkpoint import Checkpoint, file_sha256, read_checkpoint
from .choices import DEFAULT_BASE_MODEL
from .convert import (
    CUSTOM_HEAD_NAME,
    check_tensors,
    expected_shapes,
    file_info,
    load_config,
    mapped_tensors,
    planned_bytes,
    resolve_labels,
    resolve_problem_type,
    tie_weights,
    write_checksums,
    write_custom_head,
    write_model,
)
from .errors import CheckFailed, ConversionError, MappingError
from .filesystem import check_utf8_name, raise_read_problem, writing
from .mapping import KeyMapping, _strip_wrappers, base_family, check_mapping, head_readings, plan_mapping
from .progress import Progress, human_bytes
from .report import CARD_NAME, REPORT_NAME, build_report, model_card, write_json
from .staging import staged_output
from .verify import run_check, saved_dtype


@dataclass
class ConvertOptions:
    """Options of ``convert`` (see the CLI for their meaning)."""

    base_model: str
    revision: str | None = None
    task: str = "auto"
    labels: tuple[str, ...] | None = None
    problem_type: str | None = None
    global_attention: str = "default"
    prefix: str = "auto"
    dtype: str = "keep"
    max_shard_size: str = "5GB"
    check: bool = True
    atol: float | None = None
    report: Path | None = None
    overwrite: bool = False
    trust_checkpoint: bool = False
    lightning_module: str | None = None
    token: str | None = None
    copy: str | None = None
    drop: tuple[str, ...] = ()
    adapter_config: Path | None = None
    keep: tuple[str, ...] = ()


@contextlib.contextmanager
def _report_on_failure(state: dict[str, Any], report_path: Path | None, command: str) -> Iterator[None]:
    try:
        yield
    except ConversionError as exc:
        if report_path is not None and "ckpt" in state and not isinstance(exc, CheckFailed):
            write_json(
                report_path, build_report(command=command, error=exc.format_message(), **state), option="--report"
            )
        raise


def _read(path: Path, trust: bool, progress: Progress) -> Checkpoint:
    with progress.stage("read", "Read the checkpoint") as stage:
        ckpt = read_checkpoint(path, trust=trust)
        stage.detail = (
            f"{len(ckpt.state_dict)} tensors, {human_bytes(ckpt.weight_bytes())} of weights in a "
            f"{human_bytes(ckpt.file_bytes)} file ({ckpt.generation}, {ckpt.file_format}, {ckpt.loader} loader)"
        )
    if ckpt.placeholders:
        progress.line(f"read: replaced by inert placeholders (not run): {', '.join(ckpt.placeholders)}")
    return ckpt


def _plan(
    ckpt: Checkpoint,
    base: BaseModel,
    *,
    task: str,
    prefix: str,
    labels: tuple[str, ...] | None = None,
    problem_type: str | None = None,
    global_attention: str = "default",
    copy: str | None = None,
    drop: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
    adapter_config: Path | None = None,
    state: dict[str, Any],
) -> tuple[KeyMapping, Any]:
    """Read the task and map the keys, then build the task's config and check the keys against it."""
    check_tensors(ckpt)
    shapes = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
    found = adapters.find_adapters(shapes)
    if found is not None and adapter_config is None:
        raise adapters.unmerged_error(found)
    if found is None and adapter_config is not None:
        raise MappingError(
            "--adapter-config was given, but the checkpoint holds no LoRA adapters (no lora_A or lora_B keys)",
            "leave --adapter-config out",
        )
    if found is not None:
        shapes = adapters.merged_shapes(shapes, found)
    picked = selection.select(shapes, copy=copy, drop=drop, keep=keep)
    try:
        state["mapping"] = mapping = plan_mapping(picked.shapes, task=task, prefix=prefix)
    except MappingError as exc:
        raise selection.explain_extra_keys(picked.shapes, exc, task=task, prefix=prefix) from None
    mapping.dropped.update(picked.dropped)
    mapping.dropped.update(picked.kept)
    mapping.custom_head += [k for k in picked.kept if k not in mapping.custom_head]
    chosen = tasks.get(mapping.task, mapping.family)
    if problem_type and not chosen.problem_type:
        raise MappingError(
            f"--problem-type applies to text-classification, but the task is {chosen.name}", "leave --problem-type out"
        )
    names, source = resolve_labels(chosen, mapping.num_labels, labels, ckpt.hparams)
    problem_type, problem_source = resolve_problem_type(chosen, problem_type, ckpt.hparams)
    config = load_config(base, chosen, num_labels=mapping.num_labels, labels=names, problem_type=problem_type)
    selection.check_recorded_config(ckpt.hparams, config, base_spec=base.spec)
    if found is not None:
        assert adapter_config is not None
        merged = adapters.merge(ckpt, found, adapter_config, config, chosen, mapping)
        ckpt.state_dict = {k: v for k, v in ckpt.state_dict.items() if k not in set(found.keys)} | merged.tensors
        mapping.dropped.update(merged.dropped)
    tie_weights(ckpt, mapping, chosen, config)
    check_mapping(mapping, shapes, expected_shapes(chosen, config, pooler=mapping.has_pooler), chosen)
    state["conversion"] = _facts(chosen, mapping, config, source, global_attention)
    state["conversion"]["problem_type_from"] = problem_source
    state["conversion"]["selection"] = {"copy": copy, "drop": list(drop), "keep": list(keep)}
    state["conversion"]["custom_head"] = _custom_head(ckpt, mapping, picked.kept)
    if found is not None:
        state["reference"] = merged.reference  # popped by the caller: not a report field
    return mapping, config


def _custom_head(ckpt: Checkpoint, mapping: KeyMapping, kept: Mapping[str, str]) -> dict[str, Any] | None:
    """What ``custom_head.safetensors`` holds, for the report and the card: each tensor's shape, dtype and why."""
    if not mapping.custom_head:
        return None
    tensors = {key: ckpt.state_dict[key] for key in sorted(mapping.custom_head)}
    _, stripped = _strip_wrappers(list(tensors))
    crfs = selection.find_crfs({stripped[k]: tuple(t.shape) for k, t in tensors.items()})
    return {
        "file": CUSTOM_HEAD_NAME,
        "tensors": [
            {
                "key": key,
                "shape": list(t.shape),
                "dtype": str(t.dtype).removeprefix("torch."),
                "kept_by": "--keep" if key in kept else f"--task {mapping.task}",
            }
            for key, t in tensors.items()
        ],
        "crfs": [{"prefix": prefix, "tags": tags} for prefix, tags in crfs.items()],
    }


def _facts(task: tasks.Task, mapping: KeyMapping, config: Any, label_source: str, declared: str) -> dict[str, Any]:
    convention = tasks.resolve_global_attention(task, declared)
    return {
        "task": task.name,
        "family": task.family,
        "architecture": task.architecture,
        "auto_class": task.auto_class,
        "pipeline_tag": task.pipeline_tag,
        "head": mapping.head,
        "num_labels": mapping.num_labels if task.labels else None,
        "id2label": {str(k): v for k, v in config.id2label.items()} if task.labels else None,
        "labels_from": label_source,
        "problem_type": getattr(config, "problem_type", None),
        "global_attention": {
            "convention": convention,
            "class_default": task.global_attention,
            "declared": declared,
            "call": None if convention == task.global_attention else tasks.GLOBAL_ATTENTION_CALLS[convention],
        },
        "tied": not mapping.untied and bool(task.tied),
        "pooler": mapping.has_pooler,
        "untied": dict(mapping.untied),
    }


def convert(checkpoint: Path, output: Path, options: ConvertOptions, progress: Progress) -> dict[str, Any]:
    """Convert a checkpoint into a checked folder at ``output``; return the report.

    Raises:
        ConversionError: any stage failed; nothing is at ``output``.
        CheckFailed: the check failed; nothing is at ``output``.
    """
    state: dict[str, Any] = {"dtype_requested": options.dtype, "timings": progress.timings}
    check_utf8_name(output, "--output")
    if options.report is not None:
        check_utf8_name(options.report, "--report")
    with (
        staged_output(output, overwrite=options.overwrite, log=progress.line, warn=progress.warning) as staged,
        _report_on_failure(state, options.report, "convert"),
    ):
        state["ckpt"] = ckpt = _read(checkpoint, options.trust_checkpoint, progress)
        with progress.stage("base-model", "Resolve the base model") as stage:
            spec = _default_base_for(ckpt, options.base_model, options.prefix, progress)
            state["base"] = base = _base(spec, ckpt, revision=options.revision, token=options.token)
            stage.detail = f"{base.spec} ({len(base.tokenizer_files)} tokenizer files)"
        with progress.stage("map", "Read the task and map the keys") as stage:
            mapping, config = _plan(
                ckpt,
                base,
                task=options.task,
                prefix=options.prefix,
                labels=options.labels,
                problem_type=options.problem_type,
                global_attention=options.global_attention,
                copy=options.copy,
                drop=options.drop,
                keep=options.keep,
                adapter_config=options.adapter_config,
                state=state,
            )
            stage.detail = _map_line(mapping, state["conversion"])
            reference = state.pop("reference", None)
        with progress.stage("save", "Save the folder") as stage:
            tensors = mapped_tensors(ckpt, mapping)
            head = {key: ckpt.state_dict[key] for key in mapping.custom_head}
            staged.ensure_space(planned_bytes(tensors, options.dtype, custom_head=head, base=base))
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            written = write_model(
                staged.path,
                tensors,
                config,
                base,
                dtype=options.dtype,
                max_shard_size=options.max_shard_size,
                advance=progress.bytes_meter("save", total),
            )
            files = written.files
            state["conversion"]["tokenizer"], state["conversion"]["generation"] = written.tokenizer, written.generation
            head_digest = write_custom_head(staged.path, ckpt, mapping)
            if head_digest:
                digests = {f.name: f.sha256 for f in files} | {CUSTOM_HEAD_NAME: head_digest}
                files = [file_info(p, digests) for p in sorted(staged.path.iterdir())]
            state["files"], state["dtype_saved"] = files, str(config.dtype)
            stage.detail = f"{len(files)} files, {human_bytes(sum(f.bytes for f in files))}, {config.dtype}"
        if options.check:
            with progress.stage("check", "Check the folder against the checkpoint") as stage:
                state["check"] = check = run_check(
                    staged.path,
                    ckpt,
                    mapping,
                    config,
                    dtype=options.dtype,
                    atol=options.atol,
                    lightning_module=options.lightning_module,
                    global_attention=options.global_attention,
                    reference=reference,
                    base=base,
                )
                stage.detail = _check_line(check)
            if not check.passed:
                report = build_report(command="convert", **state)
                if options.report is not None:
                    write_json(options.report, report, option="--report")
                raise _check_failed(check, f"nothing was written to {output}", report)
        with progress.stage("publish", "Write the model card, the report and SHA256SUMS; publish the folder") as stage:
            report = build_report(command="convert", **state)
            with writing(staged.path / CARD_NAME):
                (staged.path / CARD_NAME).write_text(model_card(report), encoding="utf-8")
            report = build_report(command="convert", **{**state, "files": _listing(staged.path, files)})
            write_json(staged.path / REPORT_NAME, report)
            write_checksums(staged.path)
            if options.report is not None:  # before the folder appears: a report that cannot be written stops it
                write_json(options.report, report, option="--report")
            with writing(staged.output):
                staged.publish()
            stage.detail = f"{CARD_NAME}, {REPORT_NAME} and SHA256SUMS written; the folder is in place"
    progress.line(f"done: {output} ({sum(progress.timings.values()):.1f} s)")
    return report


def _default_base_for(ckpt: Checkpoint, spec: str, prefix: str, progress: Progress) -> str:
    """The base model to use: ``spec``, unless it is the default and the checkpoint is of another family.

    The default base model is Longformer's; for an LED checkpoint the likely base is LED's of the
    same hidden size (``Family.default_bases``), and the log says so.
    """
    if spec != DEFAULT_BASE_MODEL:
        return spec
    shapes = {k: tuple(v.shape) for k, v in ckpt.state_dict.items() if hasattr(v, "shape")}
    try:
        family, hidden = base_family(shapes, prefix)
    except ConversionError:
        return spec  # the mapping stage names the problem
    if spec in {hub_id for _, hub_id in family.default_bases}:
        return spec
    likely = family.default_base(hidden)
    progress.line(
        f"base-model: the checkpoint is {family.a()} model (hidden size {hidden}), and the default base model "
        f"{spec} is a Longformer: using {likely}, the likely base (pass --base-model to choose another)"
    )
    return likely


def _base(spec: str, ckpt: Checkpoint, *, revision: str | None = None, token: str | None = None) -> BaseModel:
    if spec == selection.HPARAMS_BASE:
        return selection.base_from_hparams(ckpt)
    return resolve_base_model(spec, revision=revision, token=token)


def _listing(folder: Path, files: list[Any]) -> list[Any]:
    known = {f.name: f.sha256 for f in files}
    return [file_info(p, known) for p in sorted(folder.iterdir()) if p.name != REPORT_NAME]


def _map_line(mapping: KeyMapping, facts: dict[str, Any]) -> str:
    labels = f", {facts['num_labels']} labels" if facts["num_labels"] else ""
    return (
        f"{facts['task']} ({facts['architecture']}{labels}); {len(mapping.mapped)} mapped, "
        f"{len(mapping.dropped)} dropped; {mapping.layout}; global attention: "
        f"{facts['global_attention']['convention']}{_assumed(facts)}"
    )


def _assumed(facts: dict[str, Any]) -> str:
    # a checkpoint does not record what its module passed as global_attention_mask: say when it was assumed
    if facts["global_attention"]["declared"] != "default":
        return ""
    return " (assumed, the task's default: pass --global-attention with what the module passed, e.g. none)"


def _check_line(check: Any) -> str:
    verdict = "passed" if check.passed else "FAILED"
    smoke = check.smoke
    return (
        f"{verdict}; max abs diff {check.max_abs_diff:.3g} (tolerance {check.atol:g}), "
        f"{check.tensors_compared} tensors compared"
        + (f"; sample: {smoke['input']!r} -> {smoke['output']}" if smoke.get("output") else "")
    )


def _check_failed(check: Any, consequence: str, report: dict[str, Any], hint: str | None = None) -> CheckFailed:
    shown = "; ".join(check.failures[:4]) + (f"; and {len(check.failures) - 4} more" if len(check.failures) > 4 else "")
    rounding = (
        "if only --dtype rounding exceeds the tolerance, raise --atol; otherwise "
        if check.dtype
        in (
            "float16",
            "bfloat16",
        )
        else ""
    )
    if _only_files_differ(check):
        # the weights and the outputs agree: the tokenizer, the generation settings or config.json do not
        error = CheckFailed(
            f"the converted folder's files differ from what the base model and the checkpoint give: {shown}; "
            f"{consequence}",
            hint
            or "convert the checkpoint again, with the --base-model it was trained from; see the report (--report)",
        )
        error.report = report
        return error
    error = CheckFailed(
        f"the converted model does not compute what the checkpoint computed: {shown}; {consequence}",
        hint
        or f"{rounding}check that --global-attention is what the module passed, and that --base-model is the config "
        "the model was trained with (layers, attention_window); see the report (--report)",
    )
    error.report = report
    return error


def _only_files_differ(check: Any) -> bool:
    named = [f for stage in getattr(check, "checks", []) for f in stage.failures]
    computed = bool(check.outputs) and all(o.passed for o in check.outputs) and not check.tensor_failures
    return bool(named) and computed and check.failures[: len(named)] == named


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
        ConversionError: the folder or checkpoint cannot be read.
        CheckFailed: the check failed.
    """
    state: dict[str, Any] = {"timings": progress.timings}
    if report is not None:
        check_utf8_name(report, "--report")
    with _report_on_failure(state, report, "verify"):
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
        state["ckpt"] = ckpt = _read(checkpoint, trust_checkpoint, progress)
        recorded = _recorded_source(model_dir)
        other = (
            f"{checkpoint} is not the checkpoint {model_dir} was converted from (its report names SHA-256 "
            f"{recorded[:16]}..., this file has {ckpt.sha256[:16]}...)"
            if recorded and recorded != ckpt.sha256
            else None
        )
        with progress.stage("base-model", "Resolve the reference config") as stage:
            state["base"] = base = _base(base_model, ckpt) if base_model else _folder_base(model_dir)
            stage.detail = base.spec
        with (
            progress.stage("map", "Map the keys") as stage,
            _folder_config_fails(base_model or lightning_module),
            _checkpoint_does_not_fit(task, other),
        ):
            labels = tuple(folder_config["id2label"][str(i)] for i in range(len(folder_config.get("id2label") or {})))
            mapping, config = _plan(
                ckpt,
                base,
                task=task.name,
                prefix=prefix,
                labels=labels if task.labels and labels and not labels[0].startswith("LABEL_") else None,
                problem_type=folder_config.get("problem_type") if task.problem_type else None,
                global_attention=global_attention,
                copy=copy,
                drop=drop,
                keep=keep,
                adapter_config=adapter_config,
                state=state,
            )
            stage.detail = _map_line(mapping, state["conversion"])
            reference = state.pop("reference", None)
        stored = saved_dtype(model_dir)
        source = Counter(str(t.dtype).removeprefix("torch.") for t in ckpt.state_dict.values() if t.is_floating_point())
        dtype = "keep" if source and source.most_common(1)[0][0] == stored else stored
        state["dtype_requested"], state["dtype_saved"] = dtype, stored
        with (
            progress.stage("check", "Check the folder against the checkpoint") as stage,
            _folder_config_fails(base_model or lightning_module),
        ):
            state["check"] = check = run_check(
                model_dir,
                ckpt,
                mapping,
                config,
                dtype=dtype,
                atol=atol,
                lightning_module=lightning_module,
                global_attention=global_attention,
                reference=reference,
                base=base if base_model else None,
            )
            stage.detail = _check_line(check)
        if not check.passed and base_model:
            check.failures[:0] = selection.config_file_differences(folder_config, config)
        changed = _changed_files(model_dir)
        if changed:
            check.failures += changed
            check.passed = False
        result = build_report(command="verify", **state)
        if report is not None:
            write_json(report, result, option="--report")
        if not check.passed:
            if other:
                raise _check_failed(check, other, result, "pass the checkpoint the folder was converted from")
            raise _check_failed(check, f"{model_dir} is not a faithful conversion", result)
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
        if isinstance(exc, selection.ConfigDisagreement):
            raise
        text = _without_hint(exc)
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
    except selection.ConfigDisagreement as exc:
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
        text = _without_hint(exc)
        raise CheckFailed(
            f"the folder's config.json cannot run the checkpoint's weights (no --base-model: the reference uses it): "
            f"{text}",
            "convert the checkpoint again, or restore the folder's config.json (see its conversion-report.json)",
        ) from None


def _without_hint(exc: ConversionError) -> str:
    """The error's message without its fix, to be given another fix."""
    text = exc.format_message()
    if exc.hint:
        text = text[: text.rfind(exc.hint.rstrip(".")[1:]) - 1].rstrip(". ")
    return text


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


def _changed_files(folder: Path) -> list[str]:
    """One line per file the folder's report lists that is missing or whose SHA-256 changed since the conversion."""
    lines = []
    for listed in _recorded(folder).get("files") or []:
        path = folder / str(listed.get("name", ""))
        if not path.is_file():
            lines.append(f"{path.name}, listed in {REPORT_NAME}, is missing")
        elif file_sha256(path) != listed.get("sha256"):
            lines.append(f"{path.name} changed since the conversion (its SHA-256 differs from {REPORT_NAME})")
    return lines


def _recorded_global_attention(folder: Path) -> str:
    attention = ((_recorded(folder).get("conversion") or {}).get("global_attention")) or {}
    return str(attention.get("convention") or "default")


def _folder_base(folder: Path) -> BaseModel:
    return BaseModel(spec=str(folder), folder=folder, config=json.loads((folder / "config.json").read_text()))


def inspect(checkpoint: Path, *, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Describe a checkpoint without loading its tensor data: format, progress, layout, sizes."""
    ckpt = read_checkpoint(checkpoint, trust=trust_checkpoint)
    tensors = {k: v for k, v in ckpt.state_dict.items() if hasattr(v, "shape")}
    info: dict[str, Any] = {
        "path": str(ckpt.path),
        "format": ckpt.file_format,
        "generation": ckpt.generation,
        "loader": ckpt.loader,
        "placeholders": ckpt.placeholders,
        "lightning_version": ckpt.lightning_version,
        "epoch": ckpt.epoch,
        "global_step": ckpt.global_step,
        "top_level_keys": ckpt.top_level_keys,
        "hyper_parameters": ckpt.hyper_parameters,
        "tensors": len(tensors),
        "parameters": sum(int(t.numel()) for t in tensors.values()),
        "dtypes": dict(Counter(str(t.dtype).removeprefix("torch.") for t in tensors.values())),
        "weight_bytes": ckpt.weight_bytes(),
        "file_bytes": ckpt.file_bytes,
        "layout": None,
        "task": None,
        "layout_error": None,
    }
    info["other_bytes"] = max(info["file_bytes"] - info["weight_bytes"], 0)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    copies = selection.find_copies(shapes)
    info["copies"] = [{"copy": c.option, "encoder": c.encoder, "keys": len(c.keys)} for c in copies]
    found = adapters.find_adapters(shapes)
    info["adapters"] = None if found is None else {"root": found.root, "modules": list(found.modules)}
    if found is not None:
        shapes = adapters.merged_shapes(shapes, found)
    try:
        if copies:
            selection.select_copy(shapes, None)  # raises, listing the copies and the --copy of each
        info["head"] = head_readings(shapes)
        info["crfs"] = selection.find_crfs(shapes)
        try:
            mapping = plan_mapping(shapes)
        except MappingError as exc:  # keys beside a head: name every way out, as convert does
            raise selection.explain_extra_keys(shapes, exc, task="auto", prefix="auto") from None
    except ConversionError as exc:
        info["layout_error"] = exc.format_message()
        return info
    task = tasks.get(mapping.task, mapping.family)
    family = tasks.FAMILIES[mapping.family]
    info["layout"] = {
        "description": mapping.layout,
        "wrapper_prefix": mapping.wrapper_prefix,
        "encoder_prefix": mapping.encoder_prefix,
        "head_prefix": mapping.head_prefix,
        "mapped": len(mapping.mapped),
        "dropped": dict(mapping.dropped),
    }
    info["task"] = task.name
    info["family"] = family.name
    info["architecture"] = task.architecture
    info["num_labels"] = mapping.num_labels if task.labels else None
    prefix = tasks.encoder_target(task)
    embeddings = tensors[next(s for s, t in mapping.mapped.items() if t == prefix + family.vocab_key)]
    info["shape"] = {"vocab_size": int(embeddings.shape[0]), "hidden_size": int(embeddings.shape[1])}
    for field, stack in family.layers.items():
        info["shape"][field] = len(
            {t[len(prefix + stack) :].split(".")[0] for t in mapping.mapped.values() if t.startswith(prefix + stack)}
        )
    return info
