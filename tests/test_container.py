"""The real image, built from the real Dockerfile, run the way GitHub's runner runs a container step.

The runner starts the container as root with ``--workdir /github/workspace``, its own folders mounted
under ``/github``, and ``GITHUB_*`` variables rewritten to those container paths. Here the workspace,
``_temp`` and its subfolders are owned by the runner's user (uid 1001 on GitHub's hosted runners), so
every root-owned file left behind is one the container wrote and did not hand back.

The image is built once per session. Where PyTorch's CPU index cannot be reached, the CPU wheel is
taken from ``build/wheels`` (``pip download --no-deps torch==PIN -d build/wheels``), as ``.ci/run`` does.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import parse_github_output

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "localhost/longformer-convert:test"
WHEELS = ROOT / "build" / "wheels"
RUNNER_UID = 1001
CONTAINER_WORKSPACE = "/github/workspace"

pytestmark = pytest.mark.container


def _engine() -> str:
    # podman keeps exit statuses; docker through podman's API socket does not, so podman comes first
    found = shutil.which("podman") or shutil.which("docker")
    if found:
        return found
    reason = "neither podman nor docker is installed, so the image cannot be built and run"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the container tests)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def _torch_pin() -> str:
    pins = re.findall(r"\btorch==([\w.+]+)", (ROOT / "Dockerfile").read_text())
    assert len(set(pins)) == 1, f"the Dockerfile should pin torch exactly once, found {pins}"
    return pins[0]


@pytest.fixture(scope="session")
def engine() -> str:
    return _engine()


@pytest.fixture(scope="session")
def image(engine: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the image from the repository's Dockerfile; returns its tag."""
    args = [engine, "build", "--tag", IMAGE]
    wheels = sorted(WHEELS.glob(f"torch-{_torch_pin()}*.whl"))
    if wheels and Path(engine).name == "podman":
        # PyTorch's CPU index is out of reach: take the CPU wheel from build/wheels instead
        args += ["--volume", f"{WHEELS}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels"]
        args += ["--build-arg", "TORCH_INDEX_URL="]
    log = tmp_path_factory.mktemp("image") / "build.log"
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run([*args, str(ROOT)], stdout=out, stderr=subprocess.STDOUT, timeout=3600)
    seconds = time.monotonic() - start
    tail = "\n".join(log.read_text().splitlines()[-40:])
    assert result.returncode == 0, f"building the image failed after {seconds:.0f} s:\n{tail}"
    size = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", IMAGE], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"built {IMAGE} in {seconds:.0f} s, {int(size) / 1e9:.2f} GB ({'local wheels' if wheels else 'CPU index'})")
    return IMAGE


class ContainerStep:
    """The runner's folders for one job (``_work/<repo>/<repo>`` and ``_work/_temp``) and its ``docker run``."""

    def __init__(self, engine: str, image: str, root: Path) -> None:
        self.engine, self.image = engine, image
        self.workspace = root / "_work" / "repo" / "repo"
        self.temp = root / "_work" / "_temp"
        self.file_commands = self.temp / "_runner_file_commands"
        self.output = self.file_commands / "output"
        self.summary = self.file_commands / "summary"
        for folder in (self.workspace, self.file_commands, self.temp / "_github_home", self.temp / "_github_workflow"):
            folder.mkdir(parents=True, exist_ok=True)
        self.output.touch()
        self.summary.touch()
        self.root = root
        self.owner = (RUNNER_UID, RUNNER_UID) if os.geteuid() == 0 else (os.getuid(), os.getgid())

    def hand_to_runner_user(self) -> None:
        """Own everything as the runner's user, as the runner's own folders are before a step."""
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, *self.owner, follow_symlinks=False)

    def not_owned(self) -> list[str]:
        """Paths under the runner's folders that its user does not own (written by the container as root)."""
        paths = [self.root, *self.root.rglob("*")]
        return sorted(
            f"{p.relative_to(self.root)} ({p.lstat().st_uid}:{p.lstat().st_gid})"
            for p in paths
            if (p.lstat().st_uid, p.lstat().st_gid) != self.owner
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args, env=env), capture_output=True, text=True, timeout=900)

    def command(
        self, *args: str, env: dict[str, str] | None = None, mounts: dict[Path, str] | None = None, name: str = ""
    ) -> list[str]:
        """The ``docker run`` of a container step (``mounts``: more volumes, such as the test pause's folder)."""
        mounts = {
            self.workspace: CONTAINER_WORKSPACE,
            self.temp / "_github_home": "/github/home",
            self.temp / "_github_workflow": "/github/workflow",
            self.file_commands: "/github/file_commands",
            self.temp: "/github/runner_temp",
            **(mounts or {}),
        }
        environment = {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "HOME": "/github/home",
            "GITHUB_WORKSPACE": CONTAINER_WORKSPACE,
            "GITHUB_OUTPUT": "/github/file_commands/output",
            "GITHUB_STEP_SUMMARY": "/github/file_commands/summary",
            "GITHUB_RUN_ID": "1",
            "GITHUB_REPOSITORY": "owner/repo",
            "RUNNER_TEMP": "/github/runner_temp",
            "RUNNER_OS": "Linux",
            **(env or {}),
        }
        command = [self.engine, "run", "--rm", "--name", name or f"longformer-test-{secrets.token_hex(4)}"]
        command += ["--workdir", CONTAINER_WORKSPACE]
        for host, container in mounts.items():
            command += ["--volume", f"{host}:{container}"]
        for variable, value in environment.items():
            command += ["--env", f"{variable}={value}"]
        return [*command, self.image, *args]


def _stage(step: ContainerStep, checkpoint: Path, base_model: Path) -> None:
    (step.workspace / "checkpoints").mkdir()
    shutil.copy2(checkpoint, step.workspace / "checkpoints" / "best.ckpt")
    shutil.copytree(base_model, step.workspace / "base")
    step.hand_to_runner_user()


def _workflow_commands(result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(f"::{name}")]


def _convert_args(checkpoint: str) -> list[str]:
    # container paths, as action.yml passes them
    return [
        "convert",
        "--checkpoint", f"{CONTAINER_WORKSPACE}/{checkpoint}",
        "--output", f"{CONTAINER_WORKSPACE}/model",
        "--base-model", f"{CONTAINER_WORKSPACE}/base",
    ]  # fmt: skip


# --- the image itself ------------------------------------------------------------------------------


def test_help_runs_and_does_not_import_torch(engine, image):
    # PYTHONPROFILEIMPORTTIME makes the interpreter list every module it imports on stderr
    result = subprocess.run(
        [engine, "run", "--rm", "--env", "PYTHONPROFILEIMPORTTIME=1", image, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Usage: longformer-convert")
    for command in ("convert", "verify", "inspect", "demo"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "click" in imported and "longformer_action.cli" in imported, sorted(imported)[:50]
    heavy = sorted(m for m in imported if m.split(".")[0] in {"torch", "transformers", "pytorch_lightning"})
    assert heavy == [], f"--help imported {heavy[:10]}"


@pytest.mark.parametrize("command", ["convert", "verify", "inspect", "demo"])
def test_every_command_has_help_in_the_image(engine, image, command):
    result = subprocess.run([engine, "run", "--rm", image, command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: longformer-convert {command} [OPTIONS]")


def test_image_runs_as_root_from_the_venv_entrypoint_under_tini(engine, image):
    result = subprocess.run(
        [engine, "image", "inspect", "--format", "{{json .Config}}", image], capture_output=True, text=True, check=True
    )
    config = json.loads(result.stdout)
    # tini is PID 1: it passes signals on to the command (a PID 1 without a handler ignores SIGTERM)
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/venv/bin/longformer-convert"]
    assert config.get("User", "") in ("", "root"), "GitHub's docs: no USER in an action's Dockerfile"
    assert config.get("WorkingDir", "") in ("", "/"), "GitHub's docs: no WORKDIR in an action's Dockerfile"
    assert "org.opencontainers.image.title" in (config.get("Labels") or {})


# --- a conversion, as a container step -------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(engine, image, checkpoints, base_model, tmp_path_factory) -> tuple[ContainerStep, object]:
    step = ContainerStep(engine, image, tmp_path_factory.mktemp("runner"))
    _stage(step, checkpoints["wrapped-pytorch_lightning"], base_model)
    start = time.monotonic()
    result = step.run(*_convert_args("checkpoints/best.ckpt"))
    print(f"container step: convert took {time.monotonic() - start:.1f} s")
    return step, result


def test_convert_exits_0_without_errors(converted):
    _, result = converted
    assert result.returncode == 0, result.stderr[-4000:]
    assert _workflow_commands(result, "error") == []
    assert not [line for line in result.stdout.splitlines() if line.startswith("::")], "stdout is for data"


def test_outputs_follow_the_heredoc_rules(converted):
    step, result = converted
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = parse_github_output(step.output.read_text())
    assert set(outputs) == {"model-dir", "report", "max-abs-diff"}
    assert outputs["model-dir"] == f"{CONTAINER_WORKSPACE}/model"
    assert outputs["report"] == f"{CONTAINER_WORKSPACE}/model/conversion-report.json"
    report = json.loads((step.workspace / "model" / "conversion-report.json").read_text())
    assert report["status"] == "ok"
    diff = float(outputs["max-abs-diff"])
    assert diff == pytest.approx(report["check"]["max_abs_diff"], rel=1e-5, abs=1e-12)
    assert diff <= report["check"]["atol"]


def test_folder_loads_on_the_host(converted):
    from transformers import AutoModelForQuestionAnswering, LongformerForQuestionAnswering

    step, result = converted
    assert result.returncode == 0, result.stderr[-4000:]
    model, info = AutoModelForQuestionAnswering.from_pretrained(step.workspace / "model", output_loading_info=True)
    assert isinstance(model, LongformerForQuestionAnswering)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info


def test_summary_has_the_check_table(converted):
    step, result = converted
    assert result.returncode == 0, result.stderr[-4000:]
    summary = step.summary.read_text()
    assert summary.startswith("## Longformer conversion: converted and checked")
    assert "| output | shape | max abs diff | max rel diff | tolerance | result |" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| `") and "logits" in line]
    assert len(rows) == 2 and all(row.endswith("| pass |") for row in rows), rows


def test_no_root_owned_files_are_left_behind(converted):
    step, result = converted
    assert result.returncode == 0, result.stderr[-4000:]
    written = list((step.workspace / "model").rglob("*"))
    assert len(written) >= 3, written  # config.json, weights, report: the check below has something to see
    assert step.not_owned() == []


def test_bad_checkpoint_fails_with_one_error_and_no_folder(engine, image, base_model, tmp_path):
    step = ContainerStep(engine, image, tmp_path / "runner")
    notes = tmp_path / "notes.txt"
    notes.write_text("these are training notes, not a checkpoint\n")
    _stage(step, notes, base_model)
    result = step.run(*_convert_args("checkpoints/best.ckpt"))
    assert result.returncode == 1, result.stderr[-4000:]
    errors = _workflow_commands(result, "error")
    assert len(errors) == 1, result.stderr[-4000:]
    assert "best.ckpt" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (step.workspace / "model").exists()
    assert parse_github_output(step.output.read_text()) == {}
    assert "## Longformer conversion failed" in step.summary.read_text()
    assert step.not_owned() == []


def test_docker_run_as_the_user_outside_actions(engine, image, checkpoints, base_model, tmp_path):
    # the README's `docker run` on a laptop: the caller's uid, HOME somewhere writable, a mounted folder
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(checkpoints["plain"], work / "best.ckpt")
    shutil.copytree(base_model, work / "base")
    os.chmod(work, 0o777)
    result = subprocess.run(
        [
            engine, "run", "--rm", "--user", "1234:1234", "--env", "HOME=/tmp", "--volume", f"{work}:/data",
            image, "convert", "--checkpoint", "/data/best.ckpt", "--output", "/data/model",
            "--base-model", "/data/base",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "::" not in result.stderr, "no workflow commands outside Actions"
    assert (work / "model" / "model.safetensors").stat().st_uid == 1234
    assert json.loads((work / "model" / "conversion-report.json").read_text())["check"]["passed"]


# --- a cancelled job: SIGTERM to `docker run`, or `docker stop` ------------------------------------------


@pytest.mark.parametrize("how", ["signal-the-cli", "stop"])
def test_a_cancelled_container_step_stops_within_seconds_and_leaves_a_clean_workspace(
    engine, image, checkpoints, base_model, tmp_path, how
):
    from longformer_action.cancel import PAUSE_ENV

    step = ContainerStep(engine, image, tmp_path / "runner")
    _stage(step, checkpoints["wrapped-pytorch_lightning"], base_model)
    pause = tmp_path / "pause"  # outside the runner's folders: the test's own
    pause.mkdir()
    name = f"longformer-cancel-{secrets.token_hex(4)}"
    command = step.command(
        *_convert_args("checkpoints/best.ckpt"), env={PAUSE_ENV: "check:/pause"}, mounts={pause: "/pause"}, name=name
    )
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not list(pause.glob("paused-*")):
            assert run.poll() is None, run.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "the container did not reach the check"
            time.sleep(0.1)
        staged = [p.name for p in step.workspace.iterdir() if p.name.startswith(".longformer-convert-")]
        assert len(staged) == 2, staged  # the lock and the staging folder, with the weights written
        start = time.monotonic()
        if how == "stop":  # SIGTERM to PID 1, as `docker stop` and a runner's container cleanup send it
            subprocess.run([engine, "stop", "--time", "60", name], capture_output=True, check=True, timeout=120)
        else:  # SIGTERM to the `docker run` client, which passes it into the container
            run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
        seconds = time.monotonic() - start
    finally:
        if run.poll() is None:
            run.kill()
            subprocess.run([engine, "rm", "--force", name], capture_output=True)
    assert seconds < 20, f"stopped after {seconds:.1f} s"  # a bound: a kill would come only after 60 s
    assert run.returncode == 143, err[-4000:]
    line = (
        "cancelled by SIGTERM during the check stage; the staging folder was removed, and nothing was written to "
        f"{CONTAINER_WORKSPACE}/model."
    )
    assert [x for x in err.splitlines() if x.startswith("::error")] == [
        f"::error title=longformer-convert%3A cancelled::{line}"
    ]
    assert sorted(p.name for p in step.workspace.iterdir()) == ["base", "checkpoints"]
    assert "## Longformer conversion cancelled" in step.summary.read_text()
    assert step.not_owned() == []


def test_the_actions_convert_step_passes_the_runners_sigint_into_the_container(
    engine, image, checkpoints, base_model, tmp_path
):
    # GitHub's runner cancels a step by signalling the step's shell alone: SIGINT, SIGTERM 7.5 s later,
    # then SIGKILL. This runs action.yml's own script in that shell and sends it SIGINT.
    import yaml

    from longformer_action.cancel import PAUSE_ENV

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    script = tmp_path / "convert-step.sh"
    script.write_text(next(s for s in action["runs"]["steps"] if s.get("id") == "convert")["run"])
    tools = tmp_path / "bin"  # `docker` is podman here
    tools.mkdir()
    (tools / "docker").write_text(f'#!/bin/sh\nexec {engine} "$@"\n')
    (tools / "docker").chmod(0o755)
    step = ContainerStep(engine, image, tmp_path / "runner")
    _stage(step, checkpoints["wrapped-pytorch_lightning"], base_model)
    pause = step.temp / "pause"
    environment = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "IMAGE": image,
        "CHECKPOINT": f"{CONTAINER_WORKSPACE}/checkpoints/best.ckpt",
        "OUTPUT": f"{CONTAINER_WORKSPACE}/model",
        "BASE_MODEL": f"{CONTAINER_WORKSPACE}/base",
        **dict.fromkeys(("REVISION", "LABELS", "DROP", "ATOL", "HF_TOKEN"), ""),
        "TASK": "auto",
        "GLOBAL_ATTENTION": "default",
        "DTYPE": "keep",
        "CHECK": "true",
        "GITHUB_WORKSPACE": str(step.workspace),
        "RUNNER_TEMP": str(step.temp),
        "GITHUB_OUTPUT": str(step.output),
        "GITHUB_STEP_SUMMARY": str(step.summary),
        PAUSE_ENV: "check:/github/runner_temp/pause",
    }

    def as_the_runner_starts_it() -> None:  # default dispositions, whatever this test process inherited
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    shell = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_the_runner_starts_it,
    )
    try:
        deadline = time.monotonic() + 600
        while not list(pause.glob("paused-*")):
            assert shell.poll() is None, shell.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "the container did not reach the check"
            time.sleep(0.1)
        start = time.monotonic()
        shell.send_signal(signal.SIGINT)
        _, err = shell.communicate(timeout=60)
        seconds = time.monotonic() - start
    finally:
        if shell.poll() is None:
            shell.kill()
            (pause / "resume").touch()  # a container the signal did not reach runs to its end instead of lingering
    assert seconds < 7.5, f"the step ended {seconds:.1f} s after SIGINT: the runner would have moved on to SIGTERM"
    assert shell.returncode == 143, err[-4000:]  # forwarded as SIGTERM
    assert "cancelled by SIGTERM during the check stage; the staging folder was removed" in err
    assert sorted(p.name for p in step.workspace.iterdir()) == ["base", "checkpoints"]
    assert "## Longformer conversion cancelled" in step.summary.read_text()
