"""``demo``: the embedded default, offline: train a tiny model with Lightning, convert it, check it, run a sample."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from ..errors import ConversionError
from ..progress import Progress
from ..registry import tasks
from ..registry.families import FAMILIES
from .convert import ConvertOptions, convert
from .run import bugs_as_errors


def demo(output: Path | None, task: str, *, debug: bool = False) -> None:
    """Train a tiny model for ``task`` with Lightning, convert it, check it, run it on a sample; print what happened.

    The work (``base/``, ``checkpoints/``, ``model/``) is kept in ``output``, or in a new temporary folder
    whose path is printed (``work:``); a temporary folder is removed when the demo fails.

    Raises:
        ConversionError: ``output`` exists and is not empty; any stage failed.
    """
    from .. import demo as tiny

    if output is not None and output.exists() and any(output.iterdir()):
        raise ConversionError(f"demo folder {output} exists and is not empty", "pass an empty or new --output")
    work = output if output is not None else Path(tempfile.mkdtemp(prefix="longformer-demo-"))
    progress = Progress()
    family = FAMILIES[tasks.get(task).family]
    try:
        with bugs_as_errors("demo", debug=debug, progress=progress):
            with progress.stage("demo", f"Train a tiny {family.short} for {task} with Lightning") as stage:
                base = tiny.make_base_model(work / "base", family=family.name)
                checkpoint = tiny.train_checkpoint(base, work / "checkpoints" / "tiny.ckpt", task=task, steps=5)
                stage.detail = f"base model at {base}, checkpoint at {checkpoint} (5 AdamW steps)"
            model = work / "model"
            report = convert(checkpoint, model, ConvertOptions(base_model=str(base)), progress)
    except BaseException:
        if output is None:  # nothing in it is worth keeping, and nobody was told where it is
            shutil.rmtree(work, ignore_errors=True)
        raise
    check = report["check"]
    if output is None:
        click.echo(
            f"work:   {work} (a new temporary folder, kept: base/, checkpoints/ and model/; remove it when done)"
        )
    click.echo(f"model:  {model}")
    click.echo(f"task:   {report['task']} ({report['architecture']})")
    click.echo(f"check:  {'passed' if check['passed'] else 'FAILED'} (max abs diff {check['max_abs_diff']:.3g})")
    smoke = check.get("smoke") or {}
    if smoke.get("output"):
        click.echo(
            f"sample: {smoke['input']} -> {smoke['output']!r} (a tiny model trained for 5 steps: it is arbitrary)"
        )
