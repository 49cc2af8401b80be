"""``longformer-convert demo``, the embedded default: a tiny model trained with Lightning, converted, checked and
run on a sample, offline, for every task (``commands/demo.py`` over ``longformer_action/demo/``), in this process
(the tree's code; ``tests/test_convert.py`` runs ``python -m longformer_action`` itself)."""

from __future__ import annotations

import pytest

from longformer_action.registry import tasks
from longformer_action.registry.names import TASKS

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("task", [t for t in TASKS if t != "auto"])
def test_the_demo_of_every_task_runs_offline(cli, tmp_path, task):
    # the tests run with HF_HUB_OFFLINE=1 from the start (tests/conftest.py): huggingface_hub reads it at import
    result = cli("demo", *([] if task == "question-answering" else ["--task", task]), "--output", tmp_path / "demo")
    assert result.exit_code == 0, result.stderr
    assert f"task:   {task} ({tasks.get(task).architecture})" in result.stdout
    assert "check:  passed (max abs diff 0)" in result.stdout and "sample:" in result.stdout
    assert (tmp_path / "demo" / "model" / "model.safetensors").exists()
    if task == "question-answering":  # the default
        assert "sample: Where is the Eiffel Tower? -> '" in result.stdout
    if task == "text2text-generation":  # LED's generate() answers with tokens
        assert "tokens [" in result.stdout
