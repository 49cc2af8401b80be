"""Cancelling: SIGTERM, SIGINT and SIGHUP end a run the same way, leaving nothing behind.

Real processes, held by the test pause at a stage where their staging folder exists, then signalled.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from longformer_action import cancel
from longformer_action.writing.lock import MODEL_DIR, STAGING_SUFFIX, lock_path

from .helpers import Runs, error_lines


@pytest.fixture()
def runs(tmp_path):
    helper = Runs(tmp_path / "pause")
    yield helper
    helper.stop_all()


@pytest.mark.parametrize(
    ("signum", "stage"),
    [(signal.SIGTERM, "check"), (signal.SIGINT, "save"), (signal.SIGHUP, "publish")],
    ids=["SIGTERM-check", "SIGINT-save", "SIGHUP-publish"],
)
def test_a_signal_cancels_the_run_and_removes_its_staging(runs, checkpoints, base_model, tmp_path, signum, stage):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "model"
    run = runs.start(checkpoints["plain"], out, base_model, pause=stage)
    runs.wait_paused(run)
    (partial,) = [p for p in work.iterdir() if p.name.endswith(STAGING_SUFFIX)]
    if stage != "save":  # the save stage pauses before it writes; later stages find the weights written
        assert (partial / MODEL_DIR / "model.safetensors").is_file()
    assert lock_path(out).is_file()

    run.send_signal(signum)
    _, err = run.communicate(timeout=60)  # a bound: the cleanup takes a moment, never a minute

    assert run.returncode == 128 + signum
    name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
    assert error_lines(err) == [
        f"Error: cancelled by {name} during the {stage} stage; the staging folder was removed, and nothing was "
        f"written to {out}."
    ]
    if stage != "publish":  # publish is not a logged stage
        assert f"\n{stage}: cancelled (" in err
    assert "Traceback" not in err and "done:" not in err
    assert sorted(work.iterdir()) == []


# --- in-process: the same handlers, a signal sent to this process ------------------------------------------


def _signal_at(monkeypatch, stage: str, signum: int) -> None:
    original = cancel.pause_point

    def hook(name: str) -> None:
        if name == stage:
            os.kill(os.getpid(), signum)
        original(name)

    monkeypatch.setattr(cancel, "pause_point", hook)


def test_in_actions_a_cancel_is_one_annotation_and_a_summary(cli, checkpoints, base_model, tmp_path, monkeypatch):
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    summary.touch()
    output.touch()
    _signal_at(monkeypatch, "check", signal.SIGTERM)
    out = tmp_path / "work" / "model"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model, env=env)
    assert result.exit_code == 143
    line = (
        "cancelled by SIGTERM during the check stage; the staging folder was removed, and nothing was written to "
        f"{out}."
    )
    annotations = [x for x in result.stderr.splitlines() if x.startswith("::error")]
    assert annotations == [f"::error title=longformer-convert%3A cancelled::{line}"]
    assert error_lines(result.stderr) == [f"Error: {line}"]
    assert summary.read_text().startswith("## Longformer conversion cancelled")
    assert output.read_text() == ""
    assert not (tmp_path / "work").exists(), "the parent made for the output is removed as well"


def test_verify_is_cancelled_the_same_way(cli, checkpoints, base_model, tmp_path, monkeypatch):
    out = tmp_path / "model"
    assert (
        cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model).exit_code == 0
    )
    _signal_at(monkeypatch, "check", signal.SIGINT)
    result = cli("verify", "--model", out, "--checkpoint", checkpoints["plain"])
    assert result.exit_code == 130
    assert error_lines(result.stderr) == ["Error: cancelled by SIGINT (Ctrl-C) during the check stage."]


def test_handlers_are_restored_after_a_command(cli, checkpoints, base_model, tmp_path):
    before = {sig: signal.getsignal(sig) for sig in cancel.SIGNALS}
    cli("convert", "--checkpoint", tmp_path / "missing.ckpt", "--output", tmp_path / "m", "--base-model", base_model)
    assert {sig: signal.getsignal(sig) for sig in cancel.SIGNALS} == before


def test_a_signal_in_a_deferred_block_is_raised_when_the_block_ends():
    done = []
    with pytest.raises(cancel.Cancelled) as caught, cancel.cancellable():
        with cancel.stage("publish"), cancel.deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            done.append("swap")
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing
            done.append("check")
        done.append("never")
    assert done == ["swap", "check"]
    assert caught.value.exit_code == 129 and caught.value.stage == "during the publish stage"


def test_a_second_signal_does_not_cut_the_cleanup_short():
    cleaned = []
    with pytest.raises(cancel.Cancelled) as caught, cancel.cancellable():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            cleaned.append("not reached")
        finally:
            os.kill(os.getpid(), signal.SIGINT)
            cleaned.append("cleaned")
    assert cleaned == ["cleaned"] and caught.value.signum == signal.SIGTERM


def test_the_pause_waits_for_resume_and_is_off_by_default(tmp_path, monkeypatch):
    cancel.pause_point("check")  # no variable: returns at once
    folder = tmp_path / "pause"
    folder.mkdir()
    (folder / "resume").touch()
    monkeypatch.setenv(cancel.PAUSE_ENV, f"check:{folder}")
    cancel.pause_point("save")
    assert not (folder / f"paused-{os.getpid()}").exists()
    cancel.pause_point("check")
    assert Path(folder / f"paused-{os.getpid()}").read_text() == "check"
