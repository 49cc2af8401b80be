"""The commands' work, stage by stage: read, resolve, map, save, check, report, publish.

Each stage logs one line; a failure at any stage leaves nothing at ``--output`` and, when asked
for, still writes the report.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base_model import BaseModel, resolve_base_model
from .checkpoint import Checkpoint, read_checkpoint
from .convert import file_info, load_config, mapped_tensors, plan, staged_output, write_checksums, write_model
from .errors import CheckFailed, ConversionError
from .mapping import plan_mapping
from .progress import Progress, human_bytes
from .report import CARD_NAME, REPORT_NAME, build_report, model_card, write_json
from .verify import run_check, saved_dtype


@dataclass
class ConvertOptions:
    """Options of ``convert`` (see the CLI for their meaning)."""

    base_model: str
    revision: str | None = None
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


@contextlib.contextmanager
def _report_on_failure(state: dict[str, Any], report_path: Path | None, command: str) -> Iterator[None]:
    try:
        yield
    except ConversionError as exc:
        if report_path is not None and "ckpt" in state and not isinstance(exc, CheckFailed):
            write_json(report_path, build_report(command=command, error=exc.format_message(), **state))
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


def convert(checkpoint: Path, output: Path, options: ConvertOptions, progress: Progress) -> dict[str, Any]:
    """Convert a checkpoint into a checked folder at ``output``; return the report.

    Raises:
        ConversionError: any stage failed; nothing is at ``output``.
        CheckFailed: the check failed; nothing is at ``output``.
    """
    state: dict[str, Any] = {"dtype_requested": options.dtype, "timings": progress.timings}
    with (
        staged_output(output, overwrite=options.overwrite) as staged,
        _report_on_failure(state, options.report, "convert"),
    ):
        state["ckpt"] = ckpt = _read(checkpoint, options.trust_checkpoint, progress)
        with progress.stage("base-model", "Resolve the base model") as stage:
            state["base"] = base = resolve_base_model(
                options.base_model, revision=options.revision, token=options.token
            )
            config = load_config(base)
            stage.detail = f"{base.spec} ({len(base.tokenizer_files)} tokenizer files)"
        with progress.stage("map", "Map the keys") as stage:
            state["mapping"] = mapping = plan(ckpt, config, prefix=options.prefix)
            stage.detail = f"{len(mapping.mapped)} mapped, {len(mapping.dropped)} dropped; {mapping.layout}"
        with progress.stage("save", "Save the folder") as stage:
            tensors = mapped_tensors(ckpt, mapping)
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            files = write_model(
                staged.path,
                tensors,
                config,
                base,
                dtype=options.dtype,
                max_shard_size=options.max_shard_size,
                advance=progress.bytes_meter("save", total),
            )
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
                )
                stage.detail = _check_line(check)
            if not check.passed:
                report = build_report(command="convert", **state)
                if options.report is not None:
                    write_json(options.report, report)
                raise _check_failed(check, f"nothing was written to {output}", report)
        report = build_report(command="convert", **state)
        (staged.path / CARD_NAME).write_text(model_card(report), encoding="utf-8")
        report = build_report(command="convert", **{**state, "files": _listing(staged.path, files)})
        write_json(staged.path / REPORT_NAME, report)
        write_checksums(staged.path)
        staged.publish()
    if options.report is not None:
        write_json(options.report, report)
    progress.line(f"done: {output} ({sum(progress.timings.values()):.1f} s)")
    return report


def _listing(folder: Path, files: list[Any]) -> list[Any]:
    known = {f.name: f.sha256 for f in files}
    return [file_info(p, known) for p in sorted(folder.iterdir()) if p.name != REPORT_NAME]


def _check_line(check: Any) -> str:
    verdict = "passed" if check.passed else "FAILED"
    return (
        f"{verdict}; max abs diff {check.max_abs_diff:.3g} (tolerance {check.atol:g}), "
        f"{check.tensors_compared} tensors compared"
        + (f"; sample answer: {check.answer['answer']!r}" if check.answer else "")
    )


def _check_failed(check: Any, consequence: str, report: dict[str, Any]) -> CheckFailed:
    shown = "; ".join(check.failures[:4]) + (f"; and {len(check.failures) - 4} more" if len(check.failures) > 4 else "")
    error = CheckFailed(
        f"the converted model does not compute what the checkpoint computed: {shown}; {consequence}",
        "if only --dtype rounding exceeds the tolerance, raise --atol; otherwise check that --base-model is "
        "the config the model was trained with (layers, attention_window) and see the report (--report)",
    )
    error.report = report
    return error


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
    progress: Progress,
) -> dict[str, Any]:
    """Check an existing folder against a checkpoint; return the report.

    The reference runs with ``base_model``'s config when given, else with the folder's own.

    Raises:
        ConversionError: the folder or checkpoint cannot be read.
        CheckFailed: the check failed.
    """
    state: dict[str, Any] = {"timings": progress.timings}
    with _report_on_failure(state, report, "verify"):
        if not (model_dir / "config.json").is_file():
            raise ConversionError(
                f"{model_dir} has no config.json", "pass the folder that convert or save_pretrained wrote"
            )
        state["ckpt"] = ckpt = _read(checkpoint, trust_checkpoint, progress)
        with progress.stage("base-model", "Resolve the reference config") as stage:
            state["base"] = base = resolve_base_model(base_model) if base_model else _folder_base(model_dir)
            config = load_config(base)
            stage.detail = base.spec
        with progress.stage("map", "Map the keys") as stage:
            state["mapping"] = mapping = plan(ckpt, config, prefix=prefix)
            stage.detail = f"{len(mapping.mapped)} mapped, {len(mapping.dropped)} dropped; {mapping.layout}"
        stored = saved_dtype(model_dir)
        source = Counter(str(t.dtype).removeprefix("torch.") for t in ckpt.state_dict.values() if t.is_floating_point())
        dtype = "keep" if source and source.most_common(1)[0][0] == stored else stored
        state["dtype_requested"], state["dtype_saved"] = dtype, stored
        with progress.stage("check", "Check the folder against the checkpoint") as stage:
            state["check"] = check = run_check(
                model_dir, ckpt, mapping, config, dtype=dtype, atol=atol, lightning_module=lightning_module
            )
            stage.detail = _check_line(check)
        result = build_report(command="verify", **state)
        if report is not None:
            write_json(report, result)
        if not check.passed:
            raise _check_failed(check, f"{model_dir} is not a faithful conversion", result)
    return result


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
    try:
        mapping = plan_mapping({k: tuple(v.shape) for k, v in tensors.items()}, None)
    except ConversionError as exc:
        info["layout_error"] = exc.format_message()
    else:
        info["layout"] = {
            "description": mapping.layout,
            "wrapper_prefix": mapping.wrapper_prefix,
            "encoder_prefix": mapping.encoder_prefix,
            "head_prefix": mapping.head_prefix,
            "mapped": len(mapping.mapped),
            "dropped": {k: v for k, v in mapping.dropped.items()},
        }
        info["task"] = "question-answering"
        embeddings = tensors[next(s for s, t in mapping.mapped.items() if t.endswith("word_embeddings.weight"))]
        layers = {t.split(".")[3] for t in mapping.mapped.values() if t.startswith("longformer.encoder.layer.")}
        info["shape"] = {
            "vocab_size": int(embeddings.shape[0]),
            "hidden_size": int(embeddings.shape[1]),
            "num_hidden_layers": len(layers),
        }
    return info
