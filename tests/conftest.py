"""Real artifacts for the tests: a tiny base model folder and checkpoints written by a real Trainer."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from longformer_action import demo
from longformer_action.cli import main

# keep the runner-emulation tests honest: the suite itself may run inside GitHub Actions
for _name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
    os.environ.pop(_name, None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Longformer base folder: config.json and tokenizer files, no weights."""
    return demo.make_base_model(tmp_path_factory.mktemp("base") / "tiny-longformer")


@pytest.fixture(scope="session")
def base_model_no_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Longformer base folder with config.json only."""
    return demo.make_base_model(tmp_path_factory.mktemp("base") / "no-tokenizer", tokenizer=False)


@pytest.fixture(scope="session")
def checkpoints(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of every layout current Lightning writes, from both Lightning packages.

    Hyper-parameters hold a ``pathlib.Path`` and an ``argparse.Namespace``, which torch's
    weights-only loader refuses, so these exercise the restricted unpickler.
    """
    folder = tmp_path_factory.mktemp("ckpt")
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
    return demo.train_fabric_checkpoint(
        base_model,
        tmp_path_factory.mktemp("fabric") / "fabric.ckpt",
        task="token-classification",
        hparams={"lr": 1e-3, "labels": FABRIC_LABELS, "config": config},
    )


@pytest.fixture(scope="session")
def trainer_output(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``output_dir`` of a real ``transformers.Trainer`` run: a text classifier (labels NEG, NEU, POS)
    trained for 2 steps, saved as ``checkpoint-2/`` with the Trainer's own files."""
    output_dir = tmp_path_factory.mktemp("hf-trainer") / "runs"
    demo.train_with_transformers_trainer(base_model, output_dir, task="text-classification", steps=2)
    return output_dir


@pytest.fixture(scope="session")
def crf_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token classifier with a CRF over its logits (``model.*`` + ``crf.transitions`` ...), trained for 3 steps
    by a real ``Trainer`` on the CRF's negative log-likelihood."""
    return demo.train_checkpoint(
        base_model, tmp_path_factory.mktemp("crf") / "crf.ckpt", task="token-classification", layout="crf"
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
    return demo.make_base_model(tmp_path_factory.mktemp("led-base") / "tiny-led", family="led")


@pytest.fixture(scope="session")
def task_checkpoints(base_model: Path, led_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """task -> (checkpoint, the trained module): one Trainer run per task, each module wrapping the task's
    transformers class (``text2text-generation``: an LED on ``led_base_model``)."""
    folder = tmp_path_factory.mktemp("task-ckpt")
    made = {}
    for task in (*LONGFORMER_TASKS, "text2text-generation"):
        base = led_base_model if task == "text2text-generation" else base_model
        module = demo.make_module(base, task=task, layout="wrapped", labels=None)
        path = demo.fit_and_save(module, demo.batches(base, 2, task=task), folder / f"{task}.ckpt")
        made[task] = (path, module.eval())
    return made


@pytest.fixture(scope="session")
def lightning_cli_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-label classifier built by a real ``LightningCLI`` and trained by a real Trainer: its
    hyper-parameters hold the config as ``class_path``/``init_args`` with ``attention_window`` [8, 8],
    the labels and ``problem_type`` (see ``tests/lightning_cli.py``)."""
    import json

    from . import lightning_cli

    config = json.loads((base_model / "config.json").read_text())
    module = lightning_cli.make_module(config, [8, 8])
    batches = demo.batches(base_model, 2, task="text-classification")
    return demo.fit_and_save(module, batches, tmp_path_factory.mktemp("cli-ckpt") / "multilabel.ckpt")


@pytest.fixture()
def cli(tmp_path: Path):
    """Invoke the CLI in-process; returns click's Result (stdout and stderr kept apart)."""
    runner = CliRunner()

    def invoke(*args: str | os.PathLike[str], env: dict[str, str] | None = None):
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)

    return invoke
