"""GitHub Actions mode, under an emulated runner: the CLI's outputs, summary and annotations, and the
action's input validation step run as the runner would run it (INPUT_* with declared defaults)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longformer_action.action.toolkit import command, escape_data, escape_property, heredoc_entry

from .helpers import parse_github_output

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


# --- what the runner does with the lines and files a step writes ------------------------------------


def unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return unescape_data(text.replace("%3A", ":").replace("%2C", ","))


_COMMAND = re.compile(r"^::(?P<name>[a-z-]+)(?: (?P<props>[^:]*))?::(?P<message>.*)$")


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    """A workflow command line as the runner reads it: name, properties, message (all unescaped)."""
    match = _COMMAND.match(line)
    assert match, f"not a workflow command: {line!r}"
    props = {}
    for item in filter(None, (match.group("props") or "").split(",")):
        key, value = item.split("=", 1)
        props[key] = unescape_property(value)
    return match.group("name"), props, unescape_data(match.group("message"))


def commands(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"::{name}")]


# --- an emulated runner ----------------------------------------------------------------------------


class Runner:
    """A workspace, a file-commands folder and RUNNER_TEMP, and the environment a step sees."""

    def __init__(self, root: Path) -> None:
        self.workspace = root / "work" / "repo"
        self.temp = root / "_temp"
        self.files = self.temp / "_runner_file_commands"
        self.home = self.temp / "_github_home"
        for folder in (self.workspace, self.files, self.home):
            folder.mkdir(parents=True)
        self.output = self.files / "set_output_1"
        self.summary = self.files / "step_summary_1"
        self.output.write_text("")
        self.summary.write_text("")

    def env(self, actions: bool = True, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
        env.update(
            CI="true",
            HOME=str(self.home),
            GITHUB_WORKSPACE=str(self.workspace),
            GITHUB_OUTPUT=str(self.output),
            GITHUB_STEP_SUMMARY=str(self.summary),
            RUNNER_TEMP=str(self.temp),
            HF_HUB_OFFLINE="1",
        )
        if actions:
            env["GITHUB_ACTIONS"] = "true"
        else:
            env.pop("GITHUB_ACTIONS", None)
        env.update(extra)
        return env

    def outputs(self) -> dict[str, str]:
        return parse_github_output(self.output.read_text())

    def cli(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        """The command, run in this process as the runner's container step runs it: in the workspace, with
        the step's environment only (the runner's own variables of this process unset)."""
        from click.testing import CliRunner

        from longformer_action.cli import main

        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
        env.update(self.env(**kwargs))
        with contextlib.chdir(self.workspace):
            result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
        return subprocess.CompletedProcess(
            ["longformer-convert", *args], result.exit_code, result.stdout, result.stderr
        )


@pytest.fixture()
def runner(tmp_path: Path) -> Runner:
    """A runner whose workspace holds the checkpoint paths the validation tests name (placeholders: the
    validation checks that a workspace checkpoint exists, not what it holds)."""
    runner = Runner(tmp_path)
    for name in ("a.ckpt", "best.ckpt", "checkpoints/best.ckpt", "run/best.ckpt"):
        (runner.workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (runner.workspace / name).write_bytes(b"")
    return runner


@pytest.fixture()
def staged(runner: Runner, checkpoints, base_model) -> Runner:
    """A workspace holding a Trainer checkpoint and the tiny base model, as a checkout would."""
    (runner.workspace / "checkpoints").mkdir(exist_ok=True)
    shutil.copy(checkpoints["wrapped-pytorch_lightning"], runner.workspace / "checkpoints" / "best.ckpt")
    shutil.copytree(base_model, runner.workspace / "base")
    return runner


# --- workflow command formatting --------------------------------------------------------------------


def test_escaping_of_messages_and_properties():
    assert escape_data("100% done\r\nnext: a, b") == "100%25 done%0D%0Anext: a, b"
    assert escape_property("100% a:b, c\n") == "100%25 a%3Ab%2C c%0A"
    line = command("error", "50%\r\n::x", title="t: a, b%", file="")
    assert line == "::error title=t%3A a%2C b%25::50%25%0D%0A::x"
    assert "\n" not in line and "\r" not in line
    assert parse_command(line) == ("error", {"title": "t: a, b%"}, "50%\r\n::x")
    # '%' is escaped first, so an escape sequence in the text survives a round trip
    assert parse_command(command("warning", "%0A is literal", title="%2C"))[1:] == ({"title": "%2C"}, "%0A is literal")


@pytest.mark.parametrize("value", ["", "plain", "two\nlines\n", "x=y<<EOF", "ghadelimiter_0\nEOF"])
def test_heredoc_outputs_round_trip(value):
    text = heredoc_entry("first", value) + heredoc_entry("second-name", "after")
    assert parse_github_output(text) == {"first": value, "second-name": "after"}


# --- the CLI in Actions mode ------------------------------------------------------------------------


def test_convert_in_actions_writes_outputs_summary_and_groups(staged):
    result = staged.cli(
        "convert", "--checkpoint", "checkpoints/best.ckpt", "--output", "model", "--base-model", "base",
        HF_TOKEN="hf_secret_value",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert log.splitlines()[0] == "::add-mask::hf_secret_value"
    assert "hf_secret_value" not in log.replace("::add-mask::hf_secret_value", "") + result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("::")]  # stdout is for data
    assert commands(log, "error") == []
    groups, ends = commands(log, "group::"), commands(log, "endgroup::")
    assert len(groups) == len(ends) >= 5  # read, base-model, map, save, check
    assert [parse_command(g)[2] for g in groups][:2] == ["Read the checkpoint", "Resolve the base model"]

    outputs = staged.outputs()
    assert set(outputs) == {"model-dir", "report", "max-abs-diff"}
    assert outputs["model-dir"] == "model" and (staged.workspace / "model" / "config.json").is_file()
    report = json.loads((staged.workspace / outputs["report"]).read_text())
    assert report["status"] == "ok"
    assert float(outputs["max-abs-diff"]) == pytest.approx(report["check"]["max_abs_diff"], rel=1e-5, abs=1e-12)

    summary = staged.summary.read_text()
    assert summary.startswith("## Longformer conversion: converted and checked")
    assert "| output | shape | max abs diff | max rel diff | tolerance | result |" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| `") and "logits" in line]
    assert len(rows) == 2 and all(row.endswith("| pass |") for row in rows), rows
    assert "`checkpoints/best.ckpt`" in summary and "| `config.json` |" in summary and "| time |" in summary


def test_root_output_is_handed_back_to_the_workspace_owner(staged):
    if os.geteuid() != 0:
        pytest.skip("only a root process (the container) writes files another user cannot remove")
    os.chown(staged.workspace, 4321, 4321)
    result = staged.cli("convert", "--checkpoint", "checkpoints/best.ckpt", "--output", "model", "--base-model", "base")
    assert result.returncode == 0, result.stderr
    owners = {
        (p.stat().st_uid, p.stat().st_gid)
        for p in [staged.workspace / "model", *(staged.workspace / "model").rglob("*")]
    }
    assert owners == {(4321, 4321)}


def test_bad_checkpoint_gives_one_escaped_error_annotation(staged):
    # a file name that needs every escape in the message: '%', CR and LF (':' and ',' stay as they are)
    name = "cut%short:\r\nv1,final.ckpt"
    (staged.workspace / name).write_bytes(b"PK\x03\x04 cut short")
    result = staged.cli("convert", "--checkpoint", name, "--output", "model", "--base-model", "base")
    assert result.returncode == 1
    errors = commands(result.stderr + result.stdout, "error")
    assert len(errors) == 1, result.stderr
    kind, props, message = parse_command(errors[0])
    assert kind == "error" and props == {"title": "longformer-convert: checkpoint failed"}
    assert name in message and "copy it again" in message
    assert "%25" in errors[0] and "%0D%0A" in errors[0]
    plain = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert plain and message.startswith(plain[0].removeprefix("Error: ").split("\r")[0])
    assert staged.outputs() == {}
    assert not (staged.workspace / "model").exists()
    assert "## Longformer conversion failed" in staged.summary.read_text()


def test_failed_check_is_its_own_annotation_and_exit_status(staged):
    # float16 rounding cannot stay within a tolerance of 1e-9: the check fails, nothing is published
    result = staged.cli(
        "convert", "--checkpoint", "checkpoints/best.ckpt", "--output", "model", "--base-model", "base",
        "--dtype", "float16", "--atol", "1e-9",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    (error,) = commands(result.stderr, "error")
    assert parse_command(error)[1] == {"title": "Check failed"}
    assert "**FAIL**" in staged.summary.read_text()
    assert staged.outputs() == {}
    assert not (staged.workspace / "model").exists()


def test_outside_actions_no_workflow_commands_appear(staged):
    (staged.workspace / "bad.ckpt").write_bytes(b"not a checkpoint")
    good = staged.cli(
        "convert", "--checkpoint", "checkpoints/best.ckpt", "--output", "model", "--base-model", "base", actions=False
    )
    bad = staged.cli("convert", "--checkpoint", "bad.ckpt", "--output", "other", "--base-model", "base", actions=False)
    assert (good.returncode, bad.returncode) == (0, 1), good.stderr + bad.stderr
    for result in (good, bad):
        assert not [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("::")]
    assert bad.stderr.count("Error:") == 1
    assert staged.output.read_text() == "" and staged.summary.read_text() == ""


# --- the action's validation step, run as the runner runs a composite step --------------------------


def _validation_step() -> dict:
    return next(s for s in ACTION["runs"]["steps"] if s.get("id") == "plan")


def run_validation(runner: Runner, **given: str) -> subprocess.CompletedProcess[str]:
    """Run action.yml's validation step with ``with:`` values ``given`` (declared defaults for the rest)."""
    inputs = ACTION["inputs"]
    unknown = set(given) - set(inputs)
    assert not unknown, f"not inputs of action.yml: {unknown}"
    values = {name: given.get(name, spec.get("default", "")) for name, spec in inputs.items()}
    step = _validation_step()
    env = runner.env()
    for key, expression in step["env"].items():
        match = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", expression)
        assert match, f"{key}: {expression}"
        env[key] = values[match.group(1)]
    assert step["shell"] == "bash"
    workdir = step["working-directory"].replace("${{ github.action_path }}", str(ROOT))
    env["GITHUB_ACTION_PATH"] = str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the runner's python3
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validation_step_gets_every_input_under_the_runners_name():
    env = _validation_step()["env"]
    assert env == {f"INPUT_{name.upper()}": f"${{{{ inputs.{name} }}}}" for name in ACTION["inputs"]}
    assert "INPUT_RETENTION-DAYS" in env  # hyphens kept, as the runner names them


def test_valid_inputs_plan_the_paths(runner):
    result = run_validation(runner, checkpoint="checkpoints/best.ckpt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert commands(result.stdout + result.stderr, "error") == []
    plan = runner.outputs()
    assert plan["checkpoint"] == "/github/workspace/checkpoints/best.ckpt"
    assert plan["output"] == "/github/workspace/longformer-model"
    assert plan["model-dir"] == str(runner.workspace / "longformer-model")
    assert plan["report"] == str(runner.workspace / "longformer-model" / "conversion-report.json")
    assert plan["base-model"] == "allenai/longformer-base-4096"
    assert (plan["check"], plan["upload"], plan["build"], plan["download-path"]) == ("true", "true", "true", "")
    assert (plan["dtype"], plan["task"], plan["artifact-name"]) == ("keep", "auto", "longformer-model")
    assert (plan["labels"], plan["global-attention"], plan["drop"], plan["keep"]) == ("", "default", "", "")


def test_drop_and_keep_are_comma_separated_lists(runner):
    result = run_validation(runner, checkpoint="best.ckpt", drop=" loss_fn. , class_prior", keep="crf. ,ema_tags")
    assert result.returncode == 0, result.stdout + result.stderr
    assert runner.outputs()["drop"] == "loss_fn.,class_prior"
    assert runner.outputs()["keep"] == "crf.,ema_tags"


def test_checkpoint_artifact_and_absolute_paths(runner):
    result = run_validation(
        runner,
        checkpoint="run/best.ckpt",
        **{
            "checkpoint-artifact": "trained",
            "output-dir": str(runner.temp / "out"),
            "base-model": str(runner.workspace / "base"),
            "upload": "False",
            "check": "TRUE",
            "retention-days": "90",
            "image": "ghcr.io/o/longformer-convert-action:v1",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    plan = runner.outputs()
    assert plan["download-path"] == str(runner.temp / "longformer-convert" / "checkpoint-artifact")
    assert plan["checkpoint"] == "/github/runner_temp/longformer-convert/checkpoint-artifact/run/best.ckpt"
    assert plan["output"] == "/github/runner_temp/out" and plan["model-dir"] == str(runner.temp / "out")
    assert plan["base-model"] == "/github/workspace/base"
    assert (plan["upload"], plan["check"], plan["build"]) == ("false", "true", "false")
    assert plan["image"] == "ghcr.io/o/longformer-convert-action:v1"


def test_token_is_masked_before_anything_else(runner):
    result = run_validation(runner, checkpoint="a.ckpt", **{"hf-token": "hf_abc%def"})
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "::add-mask::hf_abc%25def"
    assert "hf_abc" not in runner.output.read_text()


def test_both_tokens_are_masked_before_anything_else_even_when_an_input_is_bad(runner):
    tokens = {"hf-token": "hf_read_Qx1", "hub-token": "hf_write_Zr7"}
    for given in ({}, {"dtype": "fp16"}, {"hub-repo": "org/bad--name"}):
        runner.output.write_text("")
        result = run_validation(runner, checkpoint="a.ckpt", **{"hub-repo": "org/model", **tokens, **given})
        assert result.stdout.splitlines()[:2] == ["::add-mask::hf_read_Qx1", "::add-mask::hf_write_Zr7"], given
        assert "hf_write" not in runner.output.read_text() + runner.summary.read_text()


def test_the_hub_inputs_plan_the_push_and_the_attestation(runner):
    result = run_validation(
        runner,
        checkpoint="a.ckpt",
        **{"hub-repo": "my-org/longformer-qa", "hub-token": "hf_w", "hub-create-pr": "False", "attest": "true"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    plan = runner.outputs()
    assert (plan["hub-repo"], plan["hub-revision"], plan["hub-create-pr"], plan["hub-private"]) == (
        "my-org/longformer-qa",
        "main",
        "false",
        "false",
    )
    assert plan["attest"] == "true"
    assert plan["checksums"] == str(runner.workspace / "longformer-model" / "SHA256SUMS")
    assert "hub-token" not in plan


def test_without_hub_repo_nothing_is_pushed_and_no_token_is_needed(runner):
    result = run_validation(runner, checkpoint="a.ckpt", check="false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (runner.outputs()["hub-repo"], runner.outputs()["attest"]) == ("", "false")


def test_hub_token_without_hub_repo_warns_that_nothing_is_pushed(runner):
    result = run_validation(runner, checkpoint="a.ckpt", **{"hub-token": "hf_write_Zr7"})
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = commands(result.stdout + result.stderr, "warning")
    assert len(warnings) == 1, result.stdout
    _, props, message = parse_command(warnings[0])
    assert props == {"title": "Input 'hub-token' is not used"}
    assert message == (
        "Input 'hub-token' is set but 'hub-repo' is empty, so nothing will be pushed to the Hugging Face Hub. "
        "Fix: set `hub-repo: OWNER/NAME` to push the checked folder there, or remove `hub-token`."
    )
    assert result.stdout.splitlines()[0] == "::add-mask::hf_write_Zr7", "masked before the warning"
    assert runner.outputs()["hub-repo"] == "" and "hf_write" not in runner.output.read_text()

    for given in ({}, {"hub-repo": "org/model", "hub-token": "hf_write_Zr7"}):  # nothing to warn of
        result = run_validation(runner, checkpoint="a.ckpt", **given)
        assert result.returncode == 0 and commands(result.stdout + result.stderr, "warning") == [], given


@pytest.mark.parametrize(
    ("given", "bad"),
    [
        ({"checkpoint": ""}, "checkpoint"),
        ({"checkpoint": "   "}, "checkpoint"),
        ({"check": "yes"}, "check"),
        ({"upload": "1"}, "upload"),
        ({"dtype": "fp16"}, "dtype"),
        ({"task": "ner"}, "task"),
        ({"labels": "NEG,,POS"}, "labels"),
        ({"labels": "NEG,POS,NEG"}, "labels"),
        ({"drop": "loss_fn.,"}, "drop"),
        ({"keep": ",crf."}, "keep"),
        ({"global-attention": "all"}, "global-attention"),
        ({"atol": "-1e-3"}, "atol"),
        ({"atol": "tight"}, "atol"),
        ({"retention-days": "0"}, "retention-days"),
        ({"retention-days": "91"}, "retention-days"),
        ({"retention-days": "7.5"}, "retention-days"),
        ({"output-dir": "../elsewhere"}, "output-dir"),
        ({"output-dir": "."}, "output-dir"),
        ({"output-dir": "checkpoints"}, "output-dir"),
        ({"output-dir": "checkpoints/best.ckpt"}, "output-dir"),
        ({"checkpoint": "/etc/passwd"}, "checkpoint"),
        ({"checkpoint": "../x.ckpt", "checkpoint-artifact": "trained"}, "checkpoint"),
        ({"base-model": "/opt/models/base"}, "base-model"),
        *[({"artifact-name": f"model{c}v1"}, "artifact-name") for c in '":<>|*?\r\n\\/'],
        ({"hub-repo": "no-owner", "hub-token": "t"}, "hub-repo"),
        ({"hub-repo": "org/a/b", "hub-token": "t"}, "hub-repo"),
        ({"hub-repo": "org/bad--name", "hub-token": "t"}, "hub-repo"),
        ({"hub-repo": "org/model.git", "hub-token": "t"}, "hub-repo"),
        ({"hub-repo": "org/" + "x" * 97, "hub-token": "t"}, "hub-repo"),
        ({"hub-repo": "org/model"}, "hub-token"),
        ({"hub-repo": "org/model", "hub-token": "t", "check": "false"}, "check"),
        ({"hub-repo": "org/model", "hub-token": "t", "hub-revision": ""}, "hub-revision"),
        ({"hub-repo": "org/model", "hub-token": "t", "hub-revision": "refs/pr/1"}, "hub-revision"),
        ({"hub-create-pr": "yes"}, "hub-create-pr"),
        ({"hub-private": "1"}, "hub-private"),
        ({"attest": "on"}, "attest"),
    ],
)
def test_bad_input_gives_one_error_naming_it_and_the_fix(runner, given, bad):
    result = run_validation(runner, **{"checkpoint": "checkpoints/best.ckpt", **given})
    assert result.returncode == 1
    errors = commands(result.stdout + result.stderr, "error")
    assert len(errors) == 1, result.stdout
    _, props, message = parse_command(errors[0])
    assert props == {"title": f"Invalid input '{bad}'"}
    assert message.startswith(f"Input '{bad}' ") and "Fix: " in message
    assert runner.outputs() == {}  # no later step gets a plan
    assert f"invalid input `{bad}`" in runner.summary.read_text()


def test_bad_artifact_name_is_accepted_when_nothing_is_uploaded(runner):
    result = run_validation(runner, checkpoint="a.ckpt", **{"artifact-name": "a/b", "upload": "false"})
    assert result.returncode == 0, result.stdout


def test_a_checkpoint_missing_from_the_workspace_fails_before_the_image(runner):
    result = run_validation(runner, checkpoint="checkpoints/bets.ckpt")
    assert result.returncode == 1
    (error,) = commands(result.stdout + result.stderr, "error")
    _, props, message = parse_command(error)
    assert props == {"title": "Invalid input 'checkpoint'"}
    assert message.startswith("Input 'checkpoint' is 'checkpoints/bets.ckpt', which is not in the workspace.")
    assert runner.outputs() == {}, "no plan: the image is neither pulled nor built"
    # inside an artifact the file arrives later: not checked here
    artifact = run_validation(runner, checkpoint="bets.ckpt", **{"checkpoint-artifact": "trained"})
    assert artifact.returncode == 0, artifact.stdout


def test_an_output_dir_holding_the_base_models_folder_is_refused(runner):
    (runner.workspace / "models" / "base").mkdir(parents=True)
    for output in ("models/base", "models"):
        result = run_validation(runner, checkpoint="a.ckpt", **{"base-model": "models/base", "output-dir": output})
        assert result.returncode == 1, output
        (error,) = commands(result.stdout + result.stderr, "error")
        _, props, message = parse_command(error)
        assert props == {"title": "Invalid input 'output-dir'"}
        assert f"is '{output}', which holds the base model's folder 'models/base'" in message
    fine = run_validation(runner, checkpoint="a.ckpt", **{"base-model": "models/base", "output-dir": "model"})
    assert fine.returncode == 0, fine.stdout


def test_a_mistyped_base_model_folder_warns_that_it_is_read_as_a_hub_id(runner):
    (runner.workspace / "tiny" / "base").mkdir(parents=True)
    result = run_validation(runner, checkpoint="a.ckpt", **{"base-model": "tiny/bse"})
    assert result.returncode == 0, result.stdout
    (warning,) = commands(result.stdout + result.stderr, "warning")
    _, props, message = parse_command(warning)
    assert props == {"title": "Input 'base-model' is read as a Hub id"}
    assert message.startswith("Input 'base-model' is 'tiny/bse': no such folder in the workspace, though 'tiny' is")
    for base in ("tiny/base", "allenai/longformer-base-4096"):  # a folder, or a Hub id whose owner is no folder here
        quiet = run_validation(runner, checkpoint="a.ckpt", **{"base-model": base})
        assert quiet.returncode == 0 and commands(quiet.stdout + quiet.stderr, "warning") == [], base
