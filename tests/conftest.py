"""Real artifacts for the tests: tiny base model folders and checkpoints written by a real Trainer.

Every artifact is session-scoped and made once per test run: under pytest-xdist (``-n 2``) the first
worker to need one makes it under a file lock in the run's shared temporary folder, and the others
read it there (the pattern of pytest-xdist's documentation). Trained checkpoints are keyed by
(family, task, layout): ``trained_checkpoint``.

Tests that run a whole command or train are marked ``e2e`` (by the fixtures they use, or by their
module's ``pytestmark``): ``-m "not e2e and not container and not act"`` runs the unit tests alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

# one thread per process: two xdist workers (and the subprocesses they start) share two cores
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# offline from the start: huggingface_hub reads it when first imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from longformer_action import demo  # noqa: E402
from longformer_action.cli import main  # noqa: E402

from .helpers import once, trained_module  # noqa: E402

# keep the runner-emulation tests honest: the suite itself may run inside GitHub Actions
for _name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
    os.environ.pop(_name, None)

#: Fixtures that train a model or run a whole command: a test that uses one is ``e2e``.
E2E_FIXTURES = {
    "cli",
    "checkpoints",
    "task_checkpoints",
    "trained_checkpoint",
    "fabric_checkpoint",
    "trainer_output",
    "crf_checkpoint",
    "lightning_cli_checkpoint",
    "base_model_no_tokenizer",
    "led_checkpoints",
    "ema_checkpoint",
    "teacher_checkpoint",
    "lora",
    "config_in_hparams",
    "wide_window",
    "fsdp",
    "fsdp_two_ranks",
    "monitored_run",
    "converted_folders",
    "unchecked_folder",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Longformer base folder: config.json and tokenizer files, no weights."""
    return once(tmp_path_factory, "base", lambda folder: demo.make_base_model(folder / "tiny-longformer"))


@pytest.fixture(scope="session")
def base_model_no_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Longformer base folder with config.json only."""
    return once(
        tmp_path_factory, "base-no-tokenizer", lambda f: demo.make_base_model(f / "no-tokenizer", tokenizer=False)
    )


@pytest.fixture(scope="session")
def checkpoints(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of every layout current Lightning writes, from both Lightning packages.

    Hyper-parameters hold a ``pathlib.Path`` and an ``argparse.Namespace``, which torch's
    weights-only loader refuses, so these exercise the restricted unpickler.
    """
    return once(tmp_path_factory, "ckpt", lambda folder: _layout_checkpoints(base_model, folder))


def _layout_checkpoints(base_model: Path, folder: Path) -> dict[str, Path]:
    made = {}
    for layout in ("wrapped", "origin"):
        for package in ("pytorch_lightning", "lightning"):
            made[f"{layout}-{package}"] = demo.train_checkpoint(
                base_model,
                folder / f"{layout}-{package}.ckpt",
                layout=layout,
                package=package,
                data_dir=Path("/data/triviaqa"),
                args=argparse.Namespace(seq_len=4096, attention_window=4),  # one-sided, as allenai's scripts record it
            )
    made["plain"] = demo.train_checkpoint(base_model, folder / "plain.ckpt")
    return made


#: The Fabric token classifier's label names, as its hyper-parameters record them.
FABRIC_LABELS = ["O", "B-PER", "I-PER"]


@pytest.fixture(scope="session")
def fabric_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token classifier trained for 3 AdamW steps with Lightning Fabric and saved with ``Fabric.save``:
    ``model``, ``optimizer``, ``iteration`` and ``hparams`` (label names and the model's config)."""
    from transformers import LongformerConfig

    config = LongformerConfig.from_pretrained(base_model).to_dict()
    return once(
        tmp_path_factory,
        "fabric",
        lambda folder: demo.train_fabric_checkpoint(
            base_model,
            folder / "fabric.ckpt",
            task="token-classification",
            hparams={"lr": 1e-3, "labels": FABRIC_LABELS, "config": config},
        ),
    )


@pytest.fixture(scope="session")
def trainer_output(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``output_dir`` of a real ``transformers.Trainer`` run: a text classifier (labels NEG, NEU, POS)
    trained for 2 steps, saved as ``checkpoint-2/`` with the Trainer's own files."""

    def make(folder: Path) -> Path:
        demo.train_with_transformers_trainer(base_model, folder / "runs", task="text-classification", steps=2)
        return folder / "runs"

    return once(tmp_path_factory, "hf-trainer", make)


@pytest.fixture(scope="session")
def crf_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token classifier with a CRF over its logits (``model.*`` + ``crf.transitions`` ...), trained for 3 steps
    by a real ``Trainer`` on the CRF's negative log-likelihood."""
    return once(
        tmp_path_factory,
        "crf",
        lambda folder: demo.train_checkpoint(
            base_model, folder / "crf.ckpt", task="token-classification", layout="crf"
        ),
    )


#: The Longformer tasks, and the LED's (converted as ``text2text-generation`` or ``feature-extraction``).
LONGFORMER_TASKS = (
    "question-answering",
    "text-classification",
    "token-classification",
    "multiple-choice",
    "fill-mask",
    "feature-extraction",
)


@pytest.fixture(scope="session")
def led_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LED base folder: config.json, generation_config.json and tokenizer files, no weights."""
    return once(tmp_path_factory, "led-base", lambda folder: demo.make_base_model(folder / "tiny-led", family="led"))


@pytest.fixture(scope="session")
def trained_checkpoint(
    base_model: Path, led_base_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """``trained_checkpoint(task, layout, family=None, steps=2, **hparams)``: a checkpoint of a tiny module for
    ``task`` in ``layout`` (``demo.LAYOUTS``), trained once per run by a real Trainer (AdamW), on
    ``led_base_model`` for the LED family (``family``: the task's first family), else on ``base_model``.
    ``hparams`` are what the module records (``labels=None``: the key is recorded, empty)."""
    from longformer_action.registry import tasks

    def get(task: str = "question-answering", layout: str = "wrapped", *, family: str | None = None, steps: int = 2,
            **hparams: Any) -> Path:  # fmt: skip
        family = family or tasks.get(task).family
        base = led_base_model if family == "led" else base_model
        name = "-".join([family, task, layout, str(steps), *(f"{k}={v}" for k, v in sorted(hparams.items()))])
        return once(
            tmp_path_factory,
            name,
            lambda folder: demo.train_checkpoint(
                base, folder / f"{task}.ckpt", task=task, layout=layout, steps=steps, **hparams
            ),  # fmt: skip
        )

    return get


@pytest.fixture(scope="session")
def task_checkpoints(base_model: Path, led_base_model: Path, trained_checkpoint) -> dict:
    """task -> (checkpoint, the trained module): one Trainer run per task, each module wrapping the task's
    transformers class (``text2text-generation``: an LED on ``led_base_model``)."""
    made = {}
    for task in (*LONGFORMER_TASKS, "text2text-generation"):
        base = led_base_model if task == "text2text-generation" else base_model
        path = trained_checkpoint(task, "wrapped", labels=None)
        made[task] = (path, trained_module(base, path, task=task, labels=None))
    return made


@pytest.fixture(scope="session")
def lightning_cli_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-label classifier built by a real ``LightningCLI`` and trained by a real Trainer: its
    hyper-parameters hold the config as ``class_path``/``init_args`` with ``attention_window`` [8, 8],
    the labels and ``problem_type`` (see ``tests/lightning_cli.py``)."""
    from . import lightning_cli

    def make(folder: Path) -> Path:
        config = json.loads((base_model / "config.json").read_text())
        module = lightning_cli.make_module(config, [8, 8])
        batches = demo.batches(base_model, 2, task="text-classification")
        return demo.fit_and_save(module, batches, folder / "multilabel.ckpt")

    return once(tmp_path_factory, "cli-ckpt", make)


@pytest.fixture(scope="session")
def converted_folders(task_checkpoints, base_model: Path, led_base_model: Path, tmp_path_factory) -> dict[str, Path]:
    """task -> the folder ``convert`` wrote and checked from the task's Trainer checkpoint (``task_checkpoints``),
    converted once per run in process. Read them; copy one before changing it."""

    def make(root: Path) -> dict[str, Path]:
        for task, (checkpoint, _) in task_checkpoints.items():
            base = led_base_model if task == "text2text-generation" else base_model
            _convert_in_process(checkpoint, root / task, "--base-model", base)
        return {task: root / task for task in task_checkpoints}

    return once(tmp_path_factory, "converted-folders", make)


@pytest.fixture(scope="session")
def unchecked_folder(task_checkpoints, base_model: Path, tmp_path_factory) -> Path:
    """A text classifier converted with ``--no-check``: its report records no check."""

    def make(root: Path) -> Path:
        checkpoint = task_checkpoints["text-classification"][0]
        return _convert_in_process(checkpoint, root / "model", "--base-model", base_model, "--no-check")

    return once(tmp_path_factory, "unchecked-folder", make)


def _convert_in_process(checkpoint: Path, output: Path, *args: Any) -> Path:
    argv = ["convert", "--checkpoint", checkpoint, "--output", output, *args]
    result = CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=True)
    assert result.exit_code == 0, result.output
    return output


@pytest.fixture(scope="session")
def monitored_run(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A text classifier fitted for four epochs with ``ModelCheckpoint`` on ``val_acc`` (every epoch's file, named
    with its score, and ``last.ckpt``) and on ``val_loss`` (the best): the folders and the callbacks' final state
    (``tests/monitored.py``)."""
    from . import monitored

    return once(tmp_path_factory, "monitored", lambda folder: monitored.fit(base_model, folder))


#: The base folders' forms: the config alone, or with the public model's tokenizer files.
FORMS = ("config-only", "with-tokenizer")


@pytest.fixture(scope="session")
def public_bases(base_model, led_base_model, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(model, form) -> a base folder made from the public model's files (``tests/public_models.py``)."""
    from .public_models import PUBLIC_MODELS, make_public_base

    tiny = {
        "longformer": json.loads((base_model / "config.json").read_text()),
        "led": json.loads((led_base_model / "config.json").read_text()),
    }

    def make(root: Path) -> dict[str, Path]:
        return {
            f"{m.name}/{form}": make_public_base(m, root / m.name / form, tiny[m.family], tokenizer=form == FORMS[1])
            for m in PUBLIC_MODELS
            for form in FORMS
        }

    made = once(tmp_path_factory, "public-bases", make)
    return {tuple(key.split("/")): path for key, path in made.items()}


@pytest.fixture(scope="session")
def public_folders(public_bases, task_checkpoints, tmp_path_factory) -> dict[tuple[str, str, str], tuple[Path, Any]]:
    """(model, form, task, [dtype]) -> (the converted folder, the command's exit code and stderr), converted once per
    run on first use (``led-feature-extraction``: the LED checkpoint with ``--task feature-extraction``)."""

    class Lazy(dict):
        def __missing__(self, key):
            name, form, task, dtype = (*key, "float32")[:4]
            checkpoint = task_checkpoints["text2text-generation" if task.startswith("led-") else task][0]
            extra = ["--task", "feature-extraction"] if task == "led-feature-extraction" else []
            extra += [] if dtype == "float32" else ["--dtype", dtype]

            def convert(root: Path) -> dict[str, Any]:
                out = root / "model"
                args = ["convert", "--checkpoint", checkpoint, "--output", out]
                args += ["--base-model", public_bases[(name, form)], *extra]
                # the check's gc.collect() scans every object of this long test process: keep the ones made so far
                # out of its way (this changes how long it takes, not what it finds)
                gc.freeze()
                result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
                return {"folder": out, "exit_code": result.exit_code, "stderr": result.stderr}

            done = once(tmp_path_factory, "-".join(["public", name, form, task, dtype]), convert)
            self[key] = (done["folder"], SimpleNamespace(exit_code=done["exit_code"], stderr=done["stderr"]))
            return self[key]

    return Lazy()


@pytest.fixture()
def cli(tmp_path: Path):
    """Invoke the CLI in-process; returns click's Result (stdout and stderr kept apart)."""
    runner = CliRunner()

    def invoke(*args: str | os.PathLike[str], env: dict[str, str] | None = None):
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)

    return invoke
