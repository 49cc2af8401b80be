"""``longformer-convert demo``, the embedded default: a tiny model trained with Lightning, converted, checked and
run on a sample, offline, for every task (``commands/demo.py`` over ``longformer_action/demo/``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from longformer_action.registry import tasks
from longformer_action.registry.names import TASKS

pytestmark = pytest.mark.e2e


def test_the_default_demo_runs_offline_in_a_process_of_its_own(tmp_path):
    # the tree's command (python -m longformer_action), with the Hub out of reach
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "longformer_action", "demo", "--output", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "check:  passed (max abs diff 0)" in result.stdout
    assert "task:   question-answering (LongformerForQuestionAnswering)" in result.stdout
    assert "sample: Where is the Eiffel Tower? -> '" in result.stdout
    assert (tmp_path / "demo" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("task", [t for t in TASKS if t not in ("auto", "question-answering")])
def test_the_demo_of_every_other_task(cli, tmp_path, task):
    result = cli("demo", "--task", task, "--output", tmp_path / "demo", env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.stderr
    assert f"task:   {task} ({tasks.get(task).architecture})" in result.stdout
    assert "check:  passed (max abs diff 0)" in result.stdout and "sample:" in result.stdout
    if task == "text2text-generation":  # LED's generate() answers with tokens
        assert "tokens [" in result.stdout
