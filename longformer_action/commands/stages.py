"""The stages every command shares: read, resolve the base model, plan, check; their log lines; the report.

A command keeps what its stages produced in one ``Run`` (typed, filled stage by stage), and the
report is built from it (``Run.report``): from the checkpoint, the base model, the ``Plan``, what
was written and the check's result, never from loose state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checking.result import CheckResult
from ..errors import CheckFailed, ConversionError
from ..mapping.keys import checkpoint_family
from ..mapping.plan import MapOptions, Plan, make_plan
from ..progress import Progress, human_bytes
from ..publishing.report import build_report, write_json
from ..reading.base_model import HPARAMS_BASE, BaseModel, base_from_hparams, resolve_base_model
from ..reading.checkpoint import Checkpoint, read_checkpoint
from ..registry.files import REPORT_NAME
from ..registry.names import DEFAULT_BASE_MODEL
from ..text import listing
from ..writing.folder import FileInfo, Written, file_info


@dataclass
class Run:
    """What a command's stages produced so far (``None`` until its stage ran); the report is built from it."""

    command: str
    timings: dict[str, float]
    ckpt: Checkpoint | None = None
    base: BaseModel | None = None
    plan: Plan | None = None
    written: Written | None = None
    files: list[FileInfo] = field(default_factory=list)
    dtype_requested: str = "keep"
    dtype_saved: str | None = None
    check: CheckResult | None = None

    def report(self, *, error: str | None = None, files: list[FileInfo] | None = None) -> dict[str, Any]:
        """The report of the run so far (``files``: the folder's listing, when not ``self.files``)."""
        assert self.ckpt is not None
        return build_report(
            command=self.command,
            ckpt=self.ckpt,
            base=self.base,
            plan=self.plan,
            written=self.written,
            files=self.files if files is None else files,
            check=self.check,
            dtype_requested=self.dtype_requested,
            dtype_saved=self.dtype_saved,
            timings=self.timings,
            error=error,
        )


@contextlib.contextmanager
def report_on_failure(run: Run, report_path: Path | None) -> Iterator[None]:
    """Write ``--report`` when a stage fails after the checkpoint was read (a failed check writes its own)."""
    try:
        yield
    except ConversionError as exc:
        if report_path is not None and run.ckpt is not None and not isinstance(exc, CheckFailed):
            write_json(report_path, run.report(error=exc.format_message()), option="--report")
        raise


def inputs_read(
    checkpoint: Path, base_model: str | None, adapter_config: Path | None, *, model: Path | None = None
) -> list[tuple[str, Path | None]]:
    """What a run reads from disk, for ``claim.check_apart``: the checkpoint, ``verify``'s folder, the base
    model's folder (when ``--base-model`` is one), ``--adapter-config``."""
    base = Path(base_model).expanduser() if base_model and base_model != HPARAMS_BASE else None
    return [
        ("the checkpoint", checkpoint),
        ("the --model folder", model),
        ("the base model's folder", base if base is not None and base.is_dir() else None),
        ("the adapter config", adapter_config),
    ]


def read(path: Path, trust: bool, progress: Progress) -> Checkpoint:
    """The read stage: the checkpoint, and one log line of what it holds."""
    with progress.stage("read", "Read the checkpoint") as stage:
        ckpt = read_checkpoint(path, trust=trust)
        stage.detail = (
            f"{len(ckpt.state_dict)} tensors, {human_bytes(ckpt.weight_bytes())} of weights in a "
            f"{human_bytes(ckpt.file_bytes)} file ({ckpt.writer}, {ckpt.file_format}, {ckpt.loader} loader)"
        )
    if ckpt.placeholders:
        progress.line(f"read: replaced by inert placeholders (not run): {', '.join(ckpt.placeholders)}")
    return ckpt


def plan(ckpt: Checkpoint, base: BaseModel, options: MapOptions, stage: Any, progress: Progress) -> Plan:
    """The map stage's work inside its ``progress.stage``: the ``Plan``, the stage's log line, and a line
    saying so when a recorded ``attention_window`` was read as one-sided (a log line, not a warning: it is
    the usual form of allenai's scripts, which the card states too)."""
    result = make_plan(ckpt, base, options)
    stage.detail = map_line(result)
    labels_warning(result, progress)
    window = result.facts.one_sided_window
    if window:
        progress.line(
            f"map: {window['where']} is {window['recorded']}, half the config's attention_window {window['config']}: "
            "read as the one-sided window, as allenai's scripts record it; if the model trained with "
            f"attention_window {window['recorded']}, pass --base-model with that config"
        )
    return result


def labels_warning(plan: Plan, progress: Progress) -> None:
    """One ``Warning:`` line when ``--labels`` replaced different labels that the hyper-parameters record: both
    lists (at most 8 names each) and which one the folder holds. A wrong order or wrong names mislabel the model."""
    facts = plan.facts
    overridden = facts.labels_overridden
    if not overridden or not facts.id2label:
        return
    given = [facts.id2label[str(i)] for i in range(len(facts.id2label))]
    shown = lambda names: f"[{listing(names, 8)}]"  # noqa: E731
    progress.warning(
        f"{facts.labels_from} {shown(given)} differs from the labels {overridden['recorded_from']} records "
        f"{shown(overridden['recorded'])}: {facts.labels_from} wins; if its order or names are wrong, the model "
        "is mislabelled"
    )


def default_base_for(ckpt: Checkpoint, spec: str, prefix: str, progress: Progress) -> str:
    """The ``--base-model`` to use: ``spec``, unless it is the default and the checkpoint is of another family.

    The default base model is Longformer's; for an LED checkpoint the likely base is LED's of the
    same hidden size (``Family.default_bases``), and the log says so.
    """
    if spec != DEFAULT_BASE_MODEL:
        return spec
    shapes = {k: tuple(v.shape) for k, v in ckpt.state_dict.items() if hasattr(v, "shape")}
    try:
        family, hidden = checkpoint_family(shapes, prefix)
    except ConversionError:
        return spec  # the mapping stage names the problem
    if spec in {hub_id for _, hub_id in family.default_bases}:
        return spec
    likely = family.default_base(hidden)
    progress.line(
        f"base-model: the checkpoint is {family.with_article()} model (hidden size {hidden}), and the default base "
        f"model {spec} is a Longformer: using {likely}, the likely base (pass --base-model to choose another)"
    )
    return likely


def resolve_base(spec: str, ckpt: Checkpoint, *, revision: str | None = None, token: str | None = None) -> BaseModel:
    """The ``--base-model``: ``hparams`` (the config the checkpoint records), a folder or a Hub id."""
    if spec == HPARAMS_BASE:
        return base_from_hparams(ckpt)
    return resolve_base_model(spec, revision=revision, token=token)


def folder_listing(folder: Path, files: list[FileInfo]) -> list[FileInfo]:
    """The folder's files but the report, with the digests already known."""
    known = {f.name: f.sha256 for f in files}
    return [file_info(p, known) for p in sorted(folder.iterdir()) if p.name != REPORT_NAME]


def map_line(plan: Plan) -> str:
    """The map stage's log line: the task, the keys' fates, the layout and the global attention."""
    facts, mapping = plan.facts, plan.mapping
    labels = f", {facts.num_labels} labels" if facts.num_labels else ""
    kept = len(mapping.custom_head)
    return (
        f"{facts.task} ({facts.architecture}{labels}); {len(mapping.mapped)} mapped, "
        f"{len(mapping.dropped) - kept} dropped{f', {kept} kept beside the model' if kept else ''}; "
        f"{mapping.layout}; global attention: "
        f"{facts.global_attention.convention}{_assumed(plan)}"
    )


def _assumed(plan: Plan) -> str:
    # a checkpoint does not record what its module passed as global_attention_mask: say when it was assumed
    attention = plan.facts.global_attention
    if attention.declared != "default":
        return ""
    other = "first-token" if attention.convention == "none" else "none"  # an example that is not the default
    return f" (assumed, the task's default: pass --global-attention with what the module passed, e.g. {other})"


def check_line(check: CheckResult) -> str:
    """The check stage's log line: the verdict, the largest difference, the sample."""
    verdict = "passed" if check.passed else "FAILED"
    smoke = check.smoke
    return (
        f"{verdict}; max abs diff {check.max_abs_diff:.3g} (tolerance {check.atol:g}), "
        f"{check.tensors_compared} tensors compared"
        + (f"; sample: {smoke['input']!r} -> {smoke['output']}" if smoke.get("output") else "")
    )


#: Where a failed check's report is: the command line writes it with --report, the action shows it in the summary.
_REPORT_WHERE = "--report; in GitHub Actions, the step summary"


def check_failed(check: CheckResult, consequence: str, report: dict[str, Any], hint: str | None = None) -> CheckFailed:
    """The error of a failed check: what differs, what follows (``consequence``), and the fix."""
    shown = listing(check.failures, 4, sep="; ", more="; and {} more")
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
            or "convert the checkpoint again, with the --base-model it was trained from; see the report "
            f"({_REPORT_WHERE})",
        )
        error.report = report
        return error
    error = CheckFailed(
        f"the converted model does not compute what the checkpoint computed: {shown}; {consequence}",
        hint
        or f"{rounding}check that --global-attention is what the module passed, and that --base-model is the config "
        f"the model was trained with (layers, attention_window); see the report ({_REPORT_WHERE})",
    )
    error.report = report
    return error


def _only_files_differ(check: CheckResult) -> bool:
    # the outputs agree: what failed is a file (a tensor, the tokenizer, the generation settings, config.json
    # or a file changed since the conversion), never the global attention or the config's computation
    return bool(check.failures) and bool(check.outputs) and all(o.passed for o in check.outputs)
