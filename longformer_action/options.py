"""The command line's shared options and parameter types (sizes like 500MB, comma-separated labels)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from .registry.names import GLOBAL_ATTENTION

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


class Size(click.ParamType):
    """A size in bytes, written like ``500MB``, ``2GB`` or ``1GiB`` (decimal units, and binary ones with ``i``)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"'{value}' is not a size; write it like 500MB, 2GB or 1GiB", param, ctx)
        return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])


class Labels(click.ParamType):
    """Label names in output order, comma-separated (``NEG,POS``): a tuple of distinct, non-empty names."""

    name = "labels"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        names = tuple(n.strip() for n in str(value).split(","))
        if not all(names):
            self.fail(f"'{value}' has an empty label; write it like NEG,POS or O,B-PER,I-PER", param, ctx)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            self.fail(f"'{value}' names {', '.join(twice)} twice; give each output its own name", param, ctx)
        return names


SIZE = Size()
LABELS = Labels()


def not_current_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A usage error for an output path that names the current folder: ``.``, or empty (``--output ""``,
    which click reads as ``.``): a run would replace or fill the folder the user is working in."""
    if value is not None and str(value) == ".":
        report = param.name == "report"
        raise click.BadParameter(
            f"'{value}' is the current folder (so is an empty value), which a run must not replace or fill; pass a new "
            f"{'file' if report else 'folder'}, e.g. {'conversion-report.json' if report else 'longformer-model'}",
            ctx,
            param,
        )
    return value


checkpoint_option = click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path, readable=False),  # an unreadable file is the reader's to explain
    help="The Lightning .ckpt file (or a Lightning Fabric fabric.save file, a torch.save'd state dict, a .safetensors "
    "file, a folder transformers wrote: a Trainer's checkpoint-N or save_pretrained's output, or the folder an FSDP "
    "strategy wrote; DeepSpeed folders get the command that consolidates them).",
)


trust_option = click.option(
    "--trust-checkpoint",
    is_flag=True,
    help="Unpickle the checkpoint fully. This runs any code the file carries: only for files you trust.",
)


atol_option = click.option(
    "--atol",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Absolute tolerance on the logits. Default by saved dtype: 1e-5 float32, 1e-2 float16, 5e-2 bfloat16.",
)


report_option = click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=not_current_folder,
    help="Also write the JSON report here (written even when the check fails).",
)


debug_option = click.option(
    "--debug",
    is_flag=True,
    envvar="LONGFORMER_CONVERT_DEBUG",
    help="Print the traceback of an unexpected failure (a bug) as well as its Error line; also "
    "LONGFORMER_CONVERT_DEBUG=1 (and a GitHub Actions re-run with debug logging).",
)


module_option = click.option(
    "--lightning-module",
    default=None,
    metavar="PKG.MODULE:CLASS",
    help="Use your LightningModule's forward as the check's reference (needs --trust-checkpoint: it runs your code).",
)


def needs_trust(options: dict[str, Any]) -> None:
    """A usage error when ``--lightning-module`` comes without ``--trust-checkpoint`` (it runs the user's code)."""
    if options.get("lightning_module") and not options.get("trust_checkpoint"):
        raise click.UsageError(
            "--lightning-module loads the checkpoint with your class, which unpickles it fully: add --trust-checkpoint"
        )


global_attention_option = click.option(
    "--global-attention",
    type=click.Choice(GLOBAL_ATTENTION),
    default="default",
    show_default=True,
    help="The global attention the LightningModule passed: 'default' is the task class's own (question tokens "
    "for QA, <s> for text classification and LED, none for token classification and fill-mask, the choices for "
    "multiple choice); the check uses it, and the model card shows the call.",
)


prefix_option = click.option(
    "--prefix",
    default="auto",
    show_default=True,
    help="Prefix of the encoder's keys in the state dict, e.g. 'model.' or 'model.longformer.'; 'auto' detects it.",
)


copy_option = click.option(
    "--copy",
    default=None,
    metavar="PREFIX",
    help="Which copy of the model to convert when the checkpoint holds several (an EMA or SWA average beside the "
    "raw weights, a teacher and a student): the prefix of its keys, e.g. 'ema.module.', or '.' for the copy at the "
    "root. The other copies are dropped and listed in the report.",
)


drop_option = click.option(
    "--drop",
    multiple=True,
    metavar="PREFIX",
    help="Drop the checkpoint keys that start with PREFIX (repeatable), e.g. 'loss_fn.' for a weighted loss's "
    "class weights; the report and the model card list them as dropped by --drop.",
)


keep_option = click.option(
    "--keep",
    multiple=True,
    metavar="PREFIX",
    help="Keep the checkpoint keys that start with PREFIX (repeatable) beside the model, in custom_head.safetensors, "
    "while the rest converts to the task's class: trained tensors no transformers class computes next to its head, "
    "e.g. 'crf.' for a CRF's transitions over a token classifier's logits; the report and the model card list them "
    "with their shapes.",
)


adapter_option = click.option(
    "--adapter-config",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="peft's adapter_config.json (or the folder holding it) of the LoRA adapters in the checkpoint: they are "
    "merged as peft merges them, and checked against the unmerged adapter model.",
)


class RepoId(click.ParamType):
    """A Hub repository, ``OWNER/NAME``: one slash, neither side empty (the Hub's own name rules are checked by
    huggingface_hub before any request)."""

    name = "repo_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text.count("/") != 1 or not all(text.split("/")):
            self.fail(f"'{value}' is not OWNER/NAME; write it like my-org/longformer-qa", param, ctx)
        return text


REPO_ID = RepoId()


def push_options(prefix: str = "") -> Any:
    """The push's options, shared by ``push`` and ``convert --push-to-hub``.

    ``push`` names them ``--revision``, ``--create-pr/--no-create-pr``, ``--private`` and ``--commit-message``;
    ``convert`` (``prefix="hub-"``) ``--hub-revision`` ..., since its ``--revision`` is the base model's.
    """
    flag = f"--{prefix}"
    negative = f"--no-{prefix}"
    options = [
        click.option(
            f"{flag}revision",
            default=None,
            metavar="BRANCH",
            help="The branch the pull request targets, or that the commit goes to with "
            f"{negative}create-pr (default main); with {negative}create-pr also an open pull request's refs/pr/N.",
        ),
        click.option(
            f"{flag}create-pr/{negative}create-pr",
            default=True,
            show_default=True,
            help="Open a pull request on the Hub for a person to review and merge; "
            f"{negative}create-pr commits to the branch directly.",
        ),
        click.option(
            f"{flag}private",
            is_flag=True,
            help="Create the repository private when it does not exist; a repository that exists and is public is "
            "refused before any upload (make it private on the Hub, or drop this flag).",
        ),
        click.option(
            f"{flag}commit-message",
            default=None,
            metavar="TEXT",
            help="The commit's (and pull request's) title instead of the generated one; the description keeps the "
            "provenance: the checkpoint and its SHA-256, the task, the check's result, the workflow run.",
        ),
    ]

    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
