"""Whatever fails, one ``Error:`` line: an exception no check foresaw names its stage, the exception and
where to report it; ``--debug`` adds the traceback; nothing is left at ``--output``."""

from __future__ import annotations

import pytest

from longformer_action import errors
from longformer_action.errors import EXIT_CHECK_FAILED

from .helpers import one_error_line

ISSUES = "https://github.com/<owner>/longformer-convert-action/issues"
INJECTED = "'Thing' object has no attribute 'field' (injected)"


def _boom(*args, **kwargs):
    raise AttributeError(INJECTED)


#: The function each stage of `convert` calls first, where the stage looks it up (stages named as ``progress.stage``).
CONVERT_STAGES = {
    "read": "commands.stages.read_checkpoint",
    "base-model": "commands.stages.resolve_base_model",
    "map": "mapping.plan.plan_mapping",
    "save": "commands.convert.write_model",
    "check": "commands.convert.run_check",
    "publish": "commands.convert.write_checksums",
}
VERIFY_STAGES = {
    "read": "commands.stages.read_checkpoint",
    "base-model": "commands.verify._folder_base",
    "map": "mapping.plan.plan_mapping",
    "check": "commands.verify.run_check",
}


def test_the_issue_tracker_comes_from_the_package_metadata():
    assert errors.issues_url() == ISSUES


def _assert_bug_line(result, stage: str) -> None:
    line = one_error_line(result)
    assert line == (
        f"Error: unexpected AttributeError in the {stage} stage: {INJECTED}. This is a bug in longformer-convert: "
        f"report it at {ISSUES} with the command and this log (--debug, or LONGFORMER_CONVERT_DEBUG=1, prints the "
        "traceback too)."
    )
    assert result.exit_code == (EXIT_CHECK_FAILED if stage == "check" else 1)


@pytest.mark.parametrize("stage", CONVERT_STAGES)
def test_convert_every_stage(cli, checkpoints, base_model, tmp_path, monkeypatch, stage):
    monkeypatch.setattr(f"longformer_action.{CONVERT_STAGES[stage]}", _boom)
    out = tmp_path / "new" / "model"
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model)
    _assert_bug_line(result, stage)
    assert f"\n{stage}: failed (" in "\n" + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists(), "nothing at --output, no staging folder, no parent made for it"


@pytest.mark.parametrize("stage", VERIFY_STAGES)
def test_verify_every_stage(cli, checkpoints, base_model, tmp_path, monkeypatch, stage):
    out = tmp_path / "model"
    assert (
        cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model).exit_code == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(f"longformer_action.{VERIFY_STAGES[stage]}", _boom)
    result = cli("verify", "--model", out, "--checkpoint", checkpoints["plain"])
    _assert_bug_line(result, stage)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_inspect_and_demo(cli, checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr("longformer_action.commands.inspect.read_checkpoint", _boom)
    _assert_bug_line(cli("inspect", "--checkpoint", checkpoints["plain"]), "inspect")
    monkeypatch.setattr("longformer_action.demo.train_checkpoint", _boom)
    _assert_bug_line(cli("demo", "--output", tmp_path / "demo"), "demo")


@pytest.mark.parametrize("how", ["--debug", "LONGFORMER_CONVERT_DEBUG=1"])
def test_debug_prints_the_traceback_as_well(cli, checkpoints, base_model, tmp_path, monkeypatch, how):
    monkeypatch.setattr("longformer_action.commands.convert.run_check", _boom)
    args = ["convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--base-model", base_model]
    result = cli(
        *args, *([how] if how == "--debug" else []), env=None if how == "--debug" else {"LONGFORMER_CONVERT_DEBUG": "1"}
    )
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "Traceback (most recent call last)" in result.stderr and f"AttributeError: {INJECTED}" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: unexpected AttributeError in the check stage")
    assert not (tmp_path / "m").exists()


def test_in_actions_one_annotation_and_the_summary(cli, checkpoints, base_model, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("")
    monkeypatch.setattr("longformer_action.commands.convert.write_model", _boom)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_DEBUG": "1"}
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--base-model", base_model, env=env
    )
    assert result.exit_code == 1
    annotations = [line for line in result.stderr.splitlines() if line.startswith("::error")]
    assert len(annotations) == 1
    assert annotations[0].startswith(
        "::error title=longformer-convert%3A save failed::unexpected AttributeError in the save stage: "
    )
    assert ISSUES in annotations[0]
    assert "Traceback" in result.stderr, "a re-run with debug logging (RUNNER_DEBUG=1) prints it"
    assert "unexpected AttributeError in the save stage" in summary.read_text()


def test_help_names_debug():
    from click.testing import CliRunner

    from longformer_action.cli import main

    for command in ("convert", "verify", "inspect", "push", "demo"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert "--debug" in text and "LONGFORMER_CONVERT_DEBUG" in text, command
