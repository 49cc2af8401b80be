"""``longformer-convert``: convert, verify, inspect, push, demo. Parse the options, then call ``commands``.

torch is imported by the commands, so that ``--help`` is instant."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .cancel import run_cancellable
from .commands.run import bugs_as_errors, run_command
from .options import (
    LABELS,
    REPO_ID,
    SIZE,
    adapter_option,
    atol_option,
    checkpoint_option,
    copy_option,
    debug_option,
    drop_option,
    global_attention_option,
    keep_option,
    module_option,
    needs_trust,
    not_current_folder,
    prefix_option,
    push_options,
    report_option,
    trust_option,
)
from .registry.names import DEFAULT_BASE_MODEL, DTYPES, GLOBAL_ATTENTION, PROBLEM_TYPES, TASKS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="longformer-convert-action", prog_name="longformer-convert")
def main() -> None:
    """Turn a PyTorch Lightning checkpoint of a Longformer model (question answering, text or token
    classification, multiple choice, masked LM, or the encoder alone) or of an LED model
    (summarization) into a Hugging Face transformers folder, and prove with a forward pass that it
    computes what the checkpoint computed; push the checked folder to the Hugging Face Hub."""


@main.command()
@checkpoint_option
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    callback=not_current_folder,
    help="Folder to create, all or nothing: it appears only when converted and checked, one run at a time, and "
    "nothing that appears there meanwhile is replaced. Never the checkpoint, the base model's folder or the current "
    "folder, nor a folder holding one.",
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
    type=LABELS,
    metavar="A,B,...",
    help="Label names in output order (id2label); default: from the hyper-parameters when they hold them. Names "
    "that differ from the ones the hyper-parameters record replace them, with a warning naming both.",
)
@click.option(
    "--problem-type",
    type=click.Choice(PROBLEM_TYPES),
    default=None,
    help="config.problem_type of a text-classification model; default: the one the hyper-parameters record, "
    "if any (a value that disagrees with them is an error).",
)
@global_attention_option
@prefix_option
@copy_option
@drop_option
@keep_option
@adapter_option
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
    type=SIZE,
    help="Largest weights file; bigger models are sharded.",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Run the forward-pass and per-tensor check before publishing.",
)
@atol_option
@report_option
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output folder.")
@trust_option
@module_option
@click.option(
    "--push-to-hub",
    type=REPO_ID,
    default=None,
    metavar="OWNER/NAME",
    help="Once the check passed and the folder is in place, push it to this Hugging Face Hub repository (created "
    "when missing), as a pull request unless --no-hub-create-pr; the token (HF_TOKEN, else the one hf auth login "
    "stored) must have write access to OWNER, which the Hub is asked before converting.",
)
@push_options("hub-")
@debug_option
def convert(checkpoint: Path, output: Path, debug: bool, **options: Any) -> None:
    """Convert a checkpoint into a checked Hugging Face folder (and push it to the Hub with --push-to-hub)."""
    needs_trust(options)
    push = _hub_options(options)
    if push is not None and not options["check"]:
        raise click.UsageError("--push-to-hub pushes a checked folder only: leave out --no-check")
    run_cancellable(lambda: _convert(checkpoint, output, debug, push, **options))


def _hub_options(options: dict[str, Any]) -> dict[str, Any] | None:
    # convert's --hub-* options, taken out of the conversion's; without --push-to-hub they mean nothing
    hub = {name.removeprefix("hub_"): options.pop(name) for name in list(options) if name.startswith("hub_")}
    repo_id = options.pop("push_to_hub")
    if repo_id is not None:
        return {"repo_id": repo_id, **hub}
    ctx = click.get_current_context()
    given = [
        "/".join(p.opts + p.secondary_opts)
        for p in ctx.command.params
        if p.name and p.name.startswith("hub_") and ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(f"{', '.join(given)} applies to a push: add --push-to-hub OWNER/NAME")
    return None


def _convert(checkpoint: Path, output: Path, debug: bool, hub: dict[str, Any] | None, **options: Any) -> None:
    from .commands.convert import ConvertOptions
    from .commands.convert import convert as run
    from .commands.push import PushOptions, hub_outputs, push_after_convert

    opts = ConvertOptions(token=os.environ.get("HF_TOKEN") or None, **options)
    push = None
    if hub is not None:
        from .publishing.hub_client import push_token

        token, token_name = push_token()
        push = PushOptions(token=token, token_name=token_name, **hub)

    def work(progress: Any) -> dict[str, Any]:
        if push is not None:
            push.check()  # before any work: a push that cannot be made stops the run before the conversion
            push.check_access(progress)  # the token's user and namespaces, as the Hub says them
        report = run(checkpoint, output, opts, progress)
        return report if push is None else report | push_after_convert(output, push, progress)

    def outputs(report: dict[str, Any]) -> dict[str, str]:
        check = report.get("check") or {}
        return {
            "model-dir": str(output),
            "report": str(output / "conversion-report.json"),
            "max-abs-diff": f"{check['max_abs_diff']:.6g}" if check else "",
        } | (hub_outputs(report) if push is not None else {})

    run_command(
        work,
        outputs=outputs,
        owned=[output, opts.report],
        command="convert",
        debug=debug,
        secrets=[push.token] if push is not None else [],
    )


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="The converted folder.")
@checkpoint_option
@click.option(
    "--base-model",
    default=None,
    help="Reference config (folder or Hub id, or 'hparams' for the config the checkpoint's hyper-parameters hold); "
    "default: the folder's own config.json.",
)
@prefix_option
@copy_option
@drop_option
@keep_option
@adapter_option
@click.option(
    "--global-attention",
    type=click.Choice(GLOBAL_ATTENTION),
    default=None,
    help="The global attention the LightningModule passed; default: what the folder's conversion-report.json records.",
)
@atol_option
@report_option
@trust_option
@module_option
@debug_option
def verify(model_dir: Path, checkpoint: Path, debug: bool, **options: Any) -> None:
    """Check an existing folder against the checkpoint it was converted from."""
    needs_trust(options)
    run_cancellable(lambda: _verify(model_dir, checkpoint, debug, **options))


def _verify(model_dir: Path, checkpoint: Path, debug: bool, **options: Any) -> None:
    from .commands.verify import verify as run

    def outputs(report: dict[str, Any]) -> dict[str, str]:
        return {"max-abs-diff": f"{report['check']['max_abs_diff']:.6g}", "report": str(options["report"] or "")}

    run_command(
        lambda progress: run(model_dir, checkpoint, progress=progress, **options),
        outputs=outputs,
        owned=[options["report"]],
        command="verify",
        debug=debug,
    )


@main.command()
@checkpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
@trust_option
@debug_option
def inspect(checkpoint: Path, as_json: bool, trust_checkpoint: bool, debug: bool) -> None:
    """Describe a checkpoint without loading its tensor data."""
    from .commands.inspect import describe
    from .commands.inspect import inspect as run

    with bugs_as_errors("inspect", debug=debug):
        info = run(checkpoint, trust_checkpoint=trust_checkpoint)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(describe(info))


@main.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The folder convert wrote: pushed only when its conversion-report.json says the check passed and every "
    "file is as the report records it (SHA256SUMS verifies too).",
)
@click.option(
    "--repo-id",
    required=True,
    type=REPO_ID,
    metavar="OWNER/NAME",
    help="The Hugging Face Hub repository (a user's or an organisation's); created when missing.",
)
@push_options()
@debug_option
def push(model_dir: Path, repo_id: str, debug: bool, **options: Any) -> None:
    """Push a checked folder to the Hugging Face Hub, as a pull request by default.

    The token is HF_TOKEN, else the one hf auth login stored; it must have write access to OWNER. Pushing the same
    folder again makes no new commit and says so."""
    run_cancellable(lambda: _push(model_dir, repo_id, debug, **options))


def _push(model_dir: Path, repo_id: str, debug: bool, **options: Any) -> None:
    from .commands.push import PushOptions, hub_outputs
    from .commands.push import push as run
    from .publishing.hub_client import push_token
    from .publishing.summary import push_summary

    token, token_name = push_token()
    opts = PushOptions(repo_id=repo_id, token=token, token_name=token_name, **options)
    run_command(
        lambda progress: run(model_dir, opts, progress),
        outputs=hub_outputs,
        summary=push_summary,
        owned=[],
        command="push",
        debug=debug,
        secrets=[token],
    )


@main.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    callback=not_current_folder,
    help="Work folder, kept: the tiny base model in DIR/base, the checkpoint in DIR/checkpoints and the converted "
    "folder in DIR/model. Default: a new temporary folder, kept too, whose path is printed (work:).",
)
@click.option(
    "--task",
    type=click.Choice(TASKS[1:]),
    default="question-answering",
    show_default=True,
    help="The tiny model's task.",
)
@debug_option
def demo(output: Path | None, task: str, debug: bool) -> None:
    """Train a tiny Longformer (or LED) with Lightning, convert it, check it and run it on a sample (offline).

    The sample is a question for question answering, a text for the classifiers, a masked text for
    fill-mask, a question and three choices for multiple choice, a source text for LED's generate()."""
    from .commands.demo import demo as run

    run_cancellable(lambda: run(output, task, debug=debug))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
