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


def test_without_output_the_demo_says_where_its_kept_work_is(cli, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes the demo's folder
    result = cli("demo", "--task", "text-classification")
    assert result.exit_code == 0, result.stderr
    (work,) = tmp_path.glob("longformer-demo-*")
    assert f"work:   {work} (a new temporary folder, kept: base/, checkpoints/ and model/; remove it when done)" in (
        result.stdout
    )
    assert f"model:  {work / 'model'}" in result.stdout
    assert sorted(p.name for p in work.iterdir()) == ["base", "checkpoints", "model"]


def test_a_failed_demo_removes_its_temporary_folder(cli, tmp_path, monkeypatch):
    import tempfile

    from longformer_action import demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def fails(*args, **kwargs):  # a failure while training: the disk filled up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(demo, "train_checkpoint", fails)
    result = cli("demo", "--task", "text-classification")
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr
    assert list(tmp_path.glob("longformer-demo-*")) == []
