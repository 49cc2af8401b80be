"""``longformer-convert``: convert, verify, inspect, demo. Wiring only; torch is imported by the commands."""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from .cancel import run_cancellable
from .choices import DEFAULT_BASE_MODEL, DTYPES, GLOBAL_ATTENTION, PROBLEM_TYPES, TASKS
from .errors import CheckFailed, ConversionError, UnexpectedError

# Interpreter teardown garbage-collects every object torch and transformers built (about 1 s on 2
# cores) though nothing alive at exit needs it: files are closed by `with` blocks. Registered at
# import, so it runs after every handler registered later.
atexit.register(gc.freeze)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise click.BadParameter(f"'{value}' is not a size; write it like 500MB, 2GB or 1GiB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])


@contextlib.contextmanager
def _bugs_as_errors(command: str, *, debug: bool, progress: Any = None) -> Iterator[None]:
    """Turn an exception no check foresaw into one ``UnexpectedError`` line naming the stage it escaped from.

    ``--debug`` prints its traceback first. Click's own exceptions (usage errors, exit) pass through.
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as exc:
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        raise UnexpectedError(getattr(progress, "failed", None) or command, exc) from exc


def _run(
    work: Callable[[Any], dict[str, Any]],
    *,
    outputs: Callable[[dict[str, Any]], dict[str, str]],
    owned: list[Path | None],
    command: str,
    debug: bool = False,
) -> dict[str, Any]:
    """Run a command's work; in GitHub Actions add groups, annotations, outputs and the summary."""
    from .gha import Actions
    from .progress import Progress

    actions = Actions.detect()
    if actions:
        actions.mask(os.environ.get("HF_TOKEN"))
        debug = debug or os.environ.get("RUNNER_DEBUG") == "1"  # a re-run with debug logging
    progress = actions.progress() if actions else Progress()
    try:
        with _bugs_as_errors(command, debug=debug, progress=progress):
            report = work(progress)
    except ConversionError as exc:
        if actions:
            from .report import summary_markdown

            title = "Check failed" if isinstance(exc, CheckFailed) else f"longformer-convert: {exc.stage} failed"
            actions.error(exc.format_message(), title=title)
            report = getattr(exc, "report", None)
            actions.summary(
                summary_markdown(report)
                if report
                else f"## Longformer conversion failed\n\n> **Error:** {exc.format_message()}\n"
            )
        raise
    finally:
        if actions:
            actions.hand_back(*owned)
    if actions:
        from .report import summary_markdown

        actions.set_outputs(outputs(report))
        actions.summary(summary_markdown(report))
    return report


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="longformer-convert-action", prog_name="longformer-convert")
def main() -> None:
    """Turn a PyTorch Lightning checkpoint of a Longformer model (question answering, text or token
    classification, multiple choice, masked LM, or the encoder alone) or of an LED model
    (summarization) into a Hugging Face transformers folder, and prove with a forward pass that it
    computes what the checkpoint computed."""


_checkpoint_option = click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path, readable=False),  # an unreadable file is the reader's to explain
    help="The Lightning .ckpt file (or a Lightning Fabric fabric.save file, a torch.save'd state dict, a .safetensors "
    "file, a folder transformers wrote: a Trainer's checkpoint-N or save_pretrained's output, or the folder an FSDP "
    "strategy wrote; DeepSpeed folders get the command that consolidates them).",
)
_trust_option = click.option(
    "--trust-checkpoint",
    is_flag=True,
    help="Unpickle the checkpoint fully. This runs any code the file carries: only for files you trust.",
)
_atol_option = click.option(
    "--atol",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Absolute tolerance on the logits. Default by saved dtype: 1e-5 float32, 1e-2 float16, 5e-2 bfloat16.",
)
_report_option = click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON report here (written even when the check fails).",
)
_debug_option = click.option(
    "--debug",
    is_flag=True,
    envvar="LONGFORMER_CONVERT_DEBUG",
    help="Print the traceback of an unexpected failure (a bug) as well as its Error line; also "
    "LONGFORMER_CONVERT_DEBUG=1 (and a GitHub Actions re-run with debug logging).",
)
_module_option = click.option(
    "--lightning-module",
    default=None,
    metavar="PKG.MODULE:CLASS",
    help="Use your LightningModule's forward as the check's reference (needs --trust-checkpoint: it runs your code).",
)


def _needs_trust(options: dict[str, Any]) -> None:
    if options.get("lightning_module") and not options.get("trust_checkpoint"):
        raise click.UsageError(
            "--lightning-module loads the checkpoint with your class, which unpickles it fully: add --trust-checkpoint"
        )


def _labels(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(","))
    if not all(names):
        raise click.BadParameter(f"'{value}' has an empty label; write it like NEG,POS or O,B-PER,I-PER")
    return names


_global_attention_option = click.option(
    "--global-attention",
    type=click.Choice(GLOBAL_ATTENTION),
    default="default",
    show_default=True,
    help="The global attention the LightningModule passed: 'default' is the task class's own (question tokens "
    "for QA, <s> for text classification and LED, none for token classification and fill-mask, the choices for "
    "multiple choice); the check uses it, and the model card shows the call.",
)

_prefix_option = click.option(
    "--prefix",
    default="auto",
    show_default=True,
    help="Prefix of the encoder's keys in the state dict, e.g. 'model.' or 'model.longformer.'; 'auto' detects it.",
)

_copy_option = click.option(
    "--copy",
    default=None,
    metavar="PREFIX",
    help="Which copy of the model to convert when the checkpoint holds several (an EMA or SWA average beside the "
    "raw weights, a teacher and a student): the prefix of its keys, e.g. 'ema.module.', or '.' for the copy at the "
    "root. The other copies are dropped and listed in the report.",
)
_drop_option = click.option(
    "--drop",
    multiple=True,
    metavar="PREFIX",
    help="Drop the checkpoint keys that start with PREFIX (repeatable), e.g. 'loss_fn.' for a weighted loss's "
    "class weights; the report and the model card list them as dropped by --drop.",
)
_keep_option = click.option(
    "--keep",
    multiple=True,
    metavar="PREFIX",
    help="Keep the checkpoint keys that start with PREFIX (repeatable) beside the model, in custom_head.safetensors, "
    "while the rest converts to the task's class: trained tensors no transformers class computes next to its head, "
    "e.g. 'crf.' for a CRF's transitions over a token classifier's logits; the report and the model card list them "
    "with their shapes.",
)
_adapter_option = click.option(
    "--adapter-config",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="peft's adapter_config.json (or the folder holding it) of the LoRA adapters in the checkpoint: they are "
    "merged as peft merges them, and checked against the unmerged adapter model.",
)


@main.command()
@_checkpoint_option
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to create, all or nothing: it appears only when converted and checked, one run at a time, and "
    "nothing that appears there meanwhile is replaced.",
)
@click.option(
    "--base-model",
    default=DEFAULT_BASE_MODEL,
    show_default=True,
    help="Local folder or Hub id for config.json and tokenizer files (weights are never downloaded); 'hparams' "
    "takes the config the checkpoint's hyper-parameters hold (no tokenizer files).",
)
@click.option("--revision", default=None, help="Branch, tag or commit of a Hub base model.")
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default="auto",
    show_default=True,
    help="The model's task; 'auto' reads it from the head's keys and shapes and asks when they allow two "
    "readings. 'feature-extraction' exports the encoder alone (for heads no transformers class has); "
    "'text2text-generation' is LED's.",
)
@click.option(
    "--labels",
    default=None,
    callback=_labels,
    metavar="A,B,...",
    help="Label names in output order (id2label); default: from the hyper-parameters when they hold them.",
)
@click.option(
    "--problem-type",
    type=click.Choice(PROBLEM_TYPES),
    default=None,
    help="config.problem_type of a text-classification model; default: the one the hyper-parameters record, "
    "if any (a value that disagrees with them is an error).",
)
@_global_attention_option
@_prefix_option
@_copy_option
@_drop_option
@_keep_option
@_adapter_option
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="keep",
    show_default=True,
    help="Dtype of the saved weights; 'keep' is the checkpoint's own.",
)
@click.option(
    "--max-shard-size",
    default="5GB",
    show_default=True,
    callback=_size,
    help="Largest weights file; bigger models are sharded.",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Run the forward-pass and per-tensor check before publishing.",
)
@_atol_option
@_report_option
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output folder.")
@_trust_option
@_module_option
@_debug_option
def convert(checkpoint: Path, output: Path, debug: bool, **options: Any) -> None:
    """Convert a checkpoint into a checked Hugging Face folder."""
    _needs_trust(options)
    run_cancellable(lambda: _convert(checkpoint, output, debug, **options))


def _convert(checkpoint: Path, output: Path, debug: bool, **options: Any) -> None:
    from .pipeline import ConvertOptions
    from .pipeline import convert as run

    token = os.environ.get("HF_TOKEN") or None
    opts = ConvertOptions(token=token, **options)

    def outputs(report: dict[str, Any]) -> dict[str, str]:
        check = report.get("check") or {}
        return {
            "model-dir": str(output),
            "report": str(output / "conversion-report.json"),
            "max-abs-diff": f"{check['max_abs_diff']:.6g}" if check else "",
        }

    _run(
        lambda progress: run(checkpoint, output, opts, progress),
        outputs=outputs,
        owned=[output, opts.report],
        command="convert",
        debug=debug,
    )


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="The converted folder.")
@_checkpoint_option
@click.option(
    "--base-model",
    default=None,
    help="Reference config (folder or Hub id, or 'hparams' for the config the checkpoint's hyper-parameters hold); "
    "default: the folder's own config.json.",
)
@_prefix_option
@_copy_option
@_drop_option
@_keep_option
@_adapter_option
@click.option(
    "--global-attention",
    type=click.Choice(GLOBAL_ATTENTION),
    default=None,
    help="The global attention the LightningModule passed; default: what the folder's conversion-report.json records.",
)
@_atol_option
@_report_option
@_trust_option
@_module_option
@_debug_option
def verify(model_dir: Path, checkpoint: Path, debug: bool, **options: Any) -> None:
    """Check an existing folder against the checkpoint it was converted from."""
    _needs_trust(options)
    run_cancellable(lambda: _verify(model_dir, checkpoint, debug, **options))


def _verify(model_dir: Path, checkpoint: Path, debug: bool, **options: Any) -> None:
    from .pipeline import verify as run

    def outputs(report: dict[str, Any]) -> dict[str, str]:
        return {"max-abs-diff": f"{report['check']['max_abs_diff']:.6g}", "report": str(options["report"] or "")}

    _run(
        lambda progress: run(model_dir, checkpoint, progress=progress, **options),
        outputs=outputs,
        owned=[options["report"]],
        command="verify",
        debug=debug,
    )


@main.command()
@_checkpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
@_trust_option
@_debug_option
def inspect(checkpoint: Path, as_json: bool, trust_checkpoint: bool, debug: bool) -> None:
    """Describe a checkpoint without loading its tensor data."""
    from .pipeline import inspect as run
    from .progress import human_bytes

    with _bugs_as_errors("inspect", debug=debug):
        info = run(checkpoint, trust_checkpoint=trust_checkpoint)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    layout = info["layout"]
    lines = [
        f"checkpoint:    {info['path']}",
        f"format:        {info['format']} ({info['generation']}, read by the {info['loader']} loader)",
        f"lightning:     {info['lightning_version'] or 'n/a'}; epoch {info['epoch']}, step {info['global_step']}",
        f"hyper-params:  {', '.join(info['hyper_parameters']) or 'none'}",
        f"tensors:       {info['tensors']} ({info['parameters']:,} parameters; {info['dtypes']})",
        f"bytes:         {human_bytes(info['weight_bytes'])} of weights in {human_bytes(info['file_bytes'])} "
        f"({human_bytes(info['other_bytes'])} optimizer state and other data)",
    ]
    if info["placeholders"]:
        lines.append(f"not run:       {', '.join(info['placeholders'])} (replaced by inert placeholders)")
    if info.get("copies"):
        shown = "; ".join(f"{c['copy']} (encoder at '{c['encoder']}', {c['keys']} keys)" for c in info["copies"])
        lines.append(f"copies:        {shown} (pick one with --copy)")
    if info.get("adapters"):
        adapted = info["adapters"]
        where = adapted["root"] or "<root>"
        lines.append(
            f"adapters:      LoRA on {len(adapted['modules'])} modules under '{where}', not merged "
            "(--adapter-config merges them)"
        )
    for prefix, tags in (info.get("crfs") or {}).items():
        lines.append(f"crf:           '{prefix}' over {tags} tags (--keep {prefix} keeps it beside the tagger)")
    head = info.get("head")
    if head:
        keys = ", ".join(f"{k} {v}" for k, v in list(head["head_keys"].items())[:8]) or "none (the encoder alone)"
        more = f" and {len(head['head_keys']) - 8} more" if len(head["head_keys"]) > 8 else ""
        lines.append(f"encoder:       '{head['encoder_prefix'] or '<root>'}'; head keys: {keys}{more}")
    if layout:
        labels = f", {info['num_labels']} labels" if info["num_labels"] else ""
        lines += [
            f"task:          {info['task']} ({info['architecture']}{labels}); {info['shape']}",
            f"layout:        {layout['description']}",
            f"keys:          {layout['mapped']} mapped, {len(layout['dropped'])} dropped",
        ]
    else:
        if head and head["readings"]:
            readings = "; ".join(f"{r['task']} ({r['why']})" for r in head["readings"])
            lines.append(f"readings:      {readings}; or a head no transformers class computes (feature-extraction)")
        lines.append(f"task:          not decided: {info['layout_error']}")
    click.echo("\n".join(lines))


@main.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work folder (default: a new temporary folder).",
)
@click.option(
    "--task",
    type=click.Choice(TASKS[1:]),
    default="question-answering",
    show_default=True,
    help="The tiny model's task.",
)
@_debug_option
def demo(output: Path | None, task: str, debug: bool) -> None:
    """Train a tiny Longformer (or LED) with Lightning, convert it, check it and run it on a sample (offline).

    The sample is a question for question answering, a text for the classifiers, a masked text for
    fill-mask, a question and three choices for multiple choice, a source text for LED's generate()."""
    run_cancellable(lambda: _demo(output, task, debug))


def _demo(output: Path | None, task: str, debug: bool) -> None:
    from . import demo as tiny
    from . import tasks
    from .pipeline import ConvertOptions
    from .pipeline import convert as run
    from .progress import Progress

    work = output if output is not None else Path(tempfile.mkdtemp(prefix="longformer-demo-"))
    if output is not None and output.exists() and any(output.iterdir()):
        raise ConversionError(f"demo folder {output} exists and is not empty", "pass an empty or new --output")
    progress = Progress()
    family = tasks.FAMILIES[tasks.get(task).family]
    with _bugs_as_errors("demo", debug=debug, progress=progress):
        with progress.stage("demo", f"Train a tiny {family.short} for {task} with Lightning") as stage:
            base = tiny.make_base_model(work / "base", family=family.name)
            checkpoint = tiny.train_checkpoint(base, work / "checkpoints" / "tiny.ckpt", task=task, steps=5)
            stage.detail = f"base model at {base}, checkpoint at {checkpoint} (5 AdamW steps)"
        model = work / "model"
        report = run(checkpoint, model, ConvertOptions(base_model=str(base)), progress)
    check = report["check"]
    click.echo(f"model:  {model}")
    click.echo(f"task:   {report['task']} ({report['architecture']})")
    click.echo(f"check:  {'passed' if check['passed'] else 'FAILED'} (max abs diff {check['max_abs_diff']:.3g})")
    smoke = check.get("smoke") or {}
    if smoke.get("output"):
        click.echo(
            f"sample: {smoke['input']} -> {smoke['output']!r} (a tiny model trained for 5 steps: it is arbitrary)"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
