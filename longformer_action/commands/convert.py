"""``convert``: read, plan, write, check and publish a folder, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checking.check import run_check
from ..filesystem import check_utf8_name, writing
from ..mapping.plan import MapOptions
from ..progress import Progress, human_bytes
from ..publishing.card import model_card
from ..publishing.report import write_json
from ..registry.files import CARD_NAME, CUSTOM_HEAD_NAME, REPORT_NAME
from ..writing.checksums import write_checksums
from ..writing.claim import check_apart
from ..writing.folder import file_info, mapped_tensors, planned_bytes, write_custom_head, write_model
from ..writing.staging import staged_output
from .stages import (
    Run,
    check_failed,
    check_line,
    default_base_for,
    folder_listing,
    inputs_read,
    plan,
    read,
    report_on_failure,
    resolve_base,
)


@dataclass
class ConvertOptions:
    """Options of ``convert`` (see the command line for their meaning)."""

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

    def map_options(self) -> MapOptions:
        """The options the map stage reads."""
        return MapOptions(
            task=self.task,
            prefix=self.prefix,
            labels=self.labels,
            problem_type=self.problem_type,
            global_attention=self.global_attention,
            copy=self.copy,
            drop=self.drop,
            keep=self.keep,
            adapter_config=self.adapter_config,
        )


def convert(checkpoint: Path, output: Path, options: ConvertOptions, progress: Progress) -> dict[str, Any]:
    """Convert a checkpoint into a checked folder at ``output``: read, plan, write, check, publish; return the report.

    Raises:
        PathConflict: ``output`` (or ``--report``) would replace the checkpoint, the base model's folder,
            the adapter config or the current folder; checked before any work.
        ConversionError: any stage failed; nothing is at ``output``.
        CheckFailed: the check failed; nothing is at ``output``.
    """
    run = Run(command="convert", timings=progress.timings, dtype_requested=options.dtype)
    check_apart(
        [("--output", output), ("--report", options.report)],
        inputs_read(checkpoint, options.base_model, options.adapter_config),
        replaced=output,
    )
    check_utf8_name(output, "--output")
    if options.report is not None:
        check_utf8_name(options.report, "--report")
    with (
        staged_output(output, overwrite=options.overwrite, log=progress.line, warn=progress.warning) as staged,
        report_on_failure(run, options.report),
    ):
        run.ckpt = ckpt = read(checkpoint, options.trust_checkpoint, progress)
        with progress.stage("base-model", "Resolve the base model") as stage:
            spec = default_base_for(ckpt, options.base_model, options.prefix, progress)
            run.base = base = resolve_base(spec, ckpt, revision=options.revision, token=options.token)
            stage.detail = f"{base.spec} ({len(base.tokenizer_files)} tokenizer files)"
        with progress.stage("map", "Read the task and map the keys") as stage:
            run.plan = planned = plan(ckpt, base, options.map_options(), stage, progress)
        with progress.stage("save", "Save the folder") as stage:
            mapping, config = planned.mapping, planned.config
            tensors = mapped_tensors(ckpt, mapping)
            head = {key: ckpt.state_dict[key] for key in mapping.custom_head}
            staged.ensure_space(planned_bytes(tensors, options.dtype, custom_head=head, base=base))
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            run.written = written = write_model(
                staged.path,
                tensors,
                config,
                base,
                dtype=options.dtype,
                max_shard_size=options.max_shard_size,
                advance=progress.bytes_meter("save", total),
            )
            files = written.files
            head_digest = write_custom_head(staged.path, ckpt, mapping)
            if head_digest:
                digests = {f.name: f.sha256 for f in files} | {CUSTOM_HEAD_NAME: head_digest}
                files = [file_info(p, digests) for p in sorted(staged.path.iterdir())]
            run.files, run.dtype_saved = files, str(config.dtype)
            stage.detail = f"{len(files)} files, {human_bytes(sum(f.bytes for f in files))}, {config.dtype}"
        if options.check:
            with progress.stage("check", "Check the folder against the checkpoint") as stage:
                run.check = check = run_check(
                    staged.path,
                    ckpt,
                    planned,
                    dtype=options.dtype,
                    atol=options.atol,
                    lightning_module=options.lightning_module,
                    base=base,
                )
                stage.detail = check_line(check)
            if not check.passed:
                report = run.report()
                if options.report is not None:
                    write_json(options.report, report, option="--report")
                raise check_failed(check, f"nothing was written to {output}", report)
        with progress.stage("publish", "Write the model card, the report and SHA256SUMS; publish the folder") as stage:
            with writing(staged.path / CARD_NAME):
                (staged.path / CARD_NAME).write_text(model_card(run.report()), encoding="utf-8")
            report = run.report(files=folder_listing(staged.path, files))
            write_json(staged.path / REPORT_NAME, report)
            write_checksums(staged.path)
            if options.report is not None:  # before the folder appears: a report that cannot be written stops it
                write_json(options.report, report, option="--report")
            with writing(staged.output):
                staged.publish()
            stage.detail = f"{CARD_NAME}, {REPORT_NAME} and SHA256SUMS written; the folder is in place"
    progress.line(f"done: {output} ({sum(progress.timings.values()):.1f} s)")
    return report
