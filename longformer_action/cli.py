"""``longformer-convert``: convert, verify, inspect, demo. Parse the options, then call ``commands``.

torch is imported by the commands, so that ``--help`` is instant."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .cancel import run_cancellable
from .commands.run import _bugs_as_errors, _run
from .errors import ConversionError
from .options import (
    _adapter_option,
    _atol_option,
    _checkpoint_option,
    _copy_option,
    _debug_option,
    _drop_option,
    _global_attention_option,
    _keep_option,
    _labels,
    _module_option,
    _needs_trust,
    _prefix_option,
    _report_option,
    _size,
    _trust_option,
)
from .registry.names import DEFAULT_BASE_MODEL, DTYPES, GLOBAL_ATTENTION, PROBLEM_TYPES, TASKS
from .text import listing


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="longformer-convert-action", prog_name="longformer-convert")
def main() -> None:
    """Turn a PyTorch Lightning checkpoint of a Longformer model (question answering, text or token
    classification, multiple choice, masked LM, or the encoder alone) or of an LED model
    (summarization) into a Hugging Face transformers folder, and prove with a forward pass that it
    computes what the checkpoint computed."""


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
    from .commands.convert import ConvertOptions
    from .commands.convert import convert as run

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
    from .commands.verify import verify as run

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
    from .commands.inspect import inspect as run
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
        keys = listing([f"{k} {v}" for k, v in head["head_keys"].items()], 8) or "none (the encoder alone)"
        lines.append(f"encoder:       '{head['encoder_prefix'] or '<root>'}'; head keys: {keys}")
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
    from .commands.convert import ConvertOptions
    from .commands.convert import convert as run
    from .progress import Progress
    from .registry import tasks

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
