"""The whole action under nektos/act, an independent implementation of GitHub's runner.

Runs ``.github/workflows/self-test.yml`` with ``act-run.sh`` (from the ``shared/ci`` folder beside the
repository): the conversion job green, its artifact in act's artifact server, the downstream job
loading the model, the must-fail job failing where it should, and the matrix merged downstream. And
``tests/act/hub-push.yml``: the action with ``hub-repo`` set, pushing to the fake Hub of
``tests/fake_hub.py``, served here on an address of this machine that the action's containers reach.

act fetches every remote action a composite action names, even one whose step is skipped; github.com is
out of reach, so ``actions/attest`` (skipped: ``attest`` is false) is mapped to ``tests/act/attest``, a
stand-in that fails if it ever runs.

The image is built once, here, from the real Dockerfile, and handed to the workflow through the
``LONGFORMER_CONVERT_IMAGE`` variable; on GitHub that variable is unset and the jobs build it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from .helpers import act_stand_ins

ROOT = Path(__file__).resolve().parents[1]
CI_TOOLS = ROOT.parent / "shared" / "ci"
ACT_RUN = CI_TOOLS / "act-run.sh"
ENGINE = CI_TOOLS / "container-engine.sh"
IMAGE = "localhost/longformer-convert:act"
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "self-test.yml").read_text())

pytestmark = pytest.mark.act


def _require_tools() -> None:
    missing = [str(p) for p in (ACT_RUN, ENGINE) if not p.is_file()]
    if not missing:
        return
    reason = f"act-run.sh and container-engine.sh are needed to run workflows under act; missing: {missing}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def _engine() -> str:
    return shutil.which("podman") or shutil.which("docker") or "podman"


def _build_image(tmp: Path) -> None:
    """Build the image from the real Dockerfile; where the CPU index is unreachable, from local wheels."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    args = [_engine(), "build", "--tag", IMAGE]
    index_args = re.findall(r"^ARG\s+(\w+)=\S*download\.pytorch\.org\S*", dockerfile, re.MULTILINE)
    if index_args and "PIP_FIND_LINKS" in dockerfile:
        wheels = tmp / "wheels"
        pin = re.search(r"torch==[\w.]+", dockerfile)
        assert pin, "the Dockerfile pins torch"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", pin.group(0), "-d", str(wheels)],
            check=True,
        )
        args += ["--volume", f"{wheels}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels"]
        args += [a for name in index_args for a in ("--build-arg", f"{name}=")]
    subprocess.run([*args, str(ROOT)], check=True)


def _act(tmp: Path, workflow: str, *args: str) -> tuple[int, str, Path, float]:
    """Run ``workflow`` under act with the image built here; (exit status, log, artifacts folder, seconds)."""
    _require_tools()
    subprocess.run(["bash", str(ENGINE), "setup"], check=True)
    _build_image(tmp)
    artifacts = tmp / "artifacts"
    env = {**os.environ, "ACT_ARTIFACTS": str(artifacts)}
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_WORKSPACE", "RUNNER_TEMP"):
        env.pop(name, None)
    command = [
        "bash", str(ACT_RUN), str(ROOT),
        "-W", workflow,
        "--var", f"LONGFORMER_CONVERT_IMAGE={IMAGE}",
        *act_stand_ins(),
        *args,
    ]  # fmt: skip
    start = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    log = result.stdout + result.stderr
    (tmp / "act.log").write_text(log)
    print(f"act ran {workflow} in {seconds:.0f} s (exit {result.returncode}); log: {tmp / 'act.log'}")
    return result.returncode, log, artifacts, seconds


@pytest.fixture(scope="module")
def act_run(tmp_path_factory: pytest.TempPathFactory):
    return _act(tmp_path_factory.mktemp("act"), ".github/workflows/self-test.yml")


def _job_lines(log: str, job: str) -> list[str]:
    """act prefixes a job's lines with ``[workflow/job name]`` (``-1``, ``-2`` ... for matrix cells)."""
    name = WORKFLOW["jobs"][job].get("name", job)
    return [line for line in log.splitlines() if re.match(rf"^\[self-test/{re.escape(name)}(-\d+)?\s*\]", line)]


def _succeeded(log: str, job: str) -> bool:
    return any("Job succeeded" in line for line in _job_lines(log, job))


def _artifact_files(artifacts: Path, name: str) -> set[str]:
    folders = [p for p in artifacts.rglob(name) if p.is_dir()]
    assert folders, f"no artifact {name!r} under {artifacts}: {sorted(p.name for p in artifacts.rglob('*'))[:40]}"
    files: set[str] = set()
    for path in folders[0].rglob("*"):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                files |= set(archive.namelist())
        elif path.is_file():
            files.add(path.relative_to(folders[0]).as_posix())
    return files


def test_workflow_is_green(act_run):
    status, log, _, seconds = act_run
    assert status == 0, log[-6000:]
    assert seconds < 600


def test_convert_job_publishes_the_folder(act_run):
    _, log, artifacts, _ = act_run
    assert _succeeded(log, "convert"), "\n".join(_job_lines(log, "convert")[-60:])
    lines = "\n".join(_job_lines(log, "convert"))
    assert "Success - Main Convert" in lines and "Success - Main Check the outputs" in lines
    files = _artifact_files(artifacts, "self-test-model")
    assert {"config.json", "model.safetensors", "README.md", "conversion-report.json"} <= {Path(f).name for f in files}


def test_downstream_job_loads_the_model_and_answers(act_run):
    _, log, _, _ = act_run
    assert _succeeded(log, "use-model"), "\n".join(_job_lines(log, "use-model")[-60:])
    answers = [line for line in _job_lines(log, "use-model") if "answer: Where is the Eiffel Tower? -> '" in line]
    assert answers, "\n".join(_job_lines(log, "use-model")[-60:])


def test_must_fail_job_fails_where_it_should(act_run):
    _, log, _, _ = act_run
    lines = _job_lines(log, "must-fail")
    text = "\n".join(lines)
    assert "Failure - Main Convert the bad checkpoint (must fail)" in text, text[-4000:]
    assert "Failure - Main Give a bad input (must fail)" in text
    assert "::error title=longformer-convert%3A checkpoint failed::" in text  # the CLI's own annotation
    assert "Invalid input 'dtype'" in text
    assert "Success - Main Both failed, at the right step, and published nothing" in text
    assert _succeeded(log, "must-fail")


def test_matrix_uploads_one_artifact_per_cell_and_merges(act_run):
    _, log, artifacts, _ = act_run
    for cell in ("wrapped", "origin", "classifier"):
        assert "config.json" in {Path(f).name for f in _artifact_files(artifacts, f"sweep-{cell}")}
    assert _succeeded(log, "sweep-merge"), "\n".join(_job_lines(log, "sweep-merge")[-60:])
    merged = "\n".join(_job_lines(log, "sweep-merge"))
    assert "sweep-origin LongformerForQuestionAnswering float16" in merged
    assert "sweep-wrapped LongformerForQuestionAnswering float32" in merged
    assert "sweep-classifier LongformerForSequenceClassification float32 0.0 negative,neutral,positive" in merged


def test_a_cancelled_conversion_step_leaves_nothing_behind(act_run):
    # The step's timeout cancels it while the conversion waits at its check, the weights written to its
    # staging folder. act kills the step's shell; `docker run` gets the terminal's SIGHUP and passes it
    # into the container, whose command removes the staging folder and the lock. Nothing else removes
    # them before the job ends, so the next step's clean workspace is the command's own cleanup.
    _, log, _, _ = act_run
    lines = "\n".join(_job_lines(log, "cancel"))
    assert _succeeded(log, "cancel"), lines[-6000:]
    assert re.search(r"\| save: \d+ files", lines), lines[-6000:]  # the weights were written to staging
    assert "this step has been cancelled" in lines
    assert "Failure - Main Convert, held before the check until the step's timeout cancels it" in lines
    assert "workspace clean after the cancel" in lines
    assert "Success - Main The step was cancelled, and the conversion left nothing behind" in lines


# -- the push to the Hub -------------------------------------------------------------------------------------------


def _host_address() -> str:
    """This machine's outbound address, as act finds its own for the artifact server it serves to containers
    (a UDP socket "connected" to a public address sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("8.8.8.8", 80))
        return probe.getsockname()[0]


def test_the_action_pushes_to_the_hub_and_links_the_pull_request(tmp_path: Path) -> None:
    from .fake_hub import FakeHub

    token, read_token = "hf_act_write_Lw58pN", "hf_act_read_Qz27vK"
    hub = FakeHub()
    hub.add_token(token, user="alice", orgs=("org",))
    hub.add_token(read_token, user="bob")
    host = _host_address()
    with hub.running(host=host, cdn_host=host):
        secrets = ("--secret", f"HF_WRITE_TOKEN={token}", "--secret", f"HF_READ_TOKEN={read_token}")
        endpoint = ("--var", f"HF_ENDPOINT={hub.url}")
        status, log, artifacts, _ = _act(tmp_path, "tests/act/hub-push.yml", *endpoint, *secrets)
    lines = [line for line in log.splitlines() if line.startswith("[hub-push/")]
    text = "\n".join(lines)
    assert status == 0, text[-6000:]
    assert hub.server_errors == []

    repo = hub.repos["org/act-classifier"]
    (pr,) = repo.pull_requests
    pr_url = f"{hub.url}/org/act-classifier/discussions/1"
    head = repo.refs["refs/pr/1"]
    assert f"hub-pr-url={pr_url}" in text and f"hub-commit-url={hub.url}/org/act-classifier/commit/{head}" in text
    assert f"Opened pull request [#1]({pr_url}) against `main`" in text, "the step summary links the pull request"
    assert repo.names("main") == [".gitattributes"], "main waits for the review"
    on_hub = repo.files_at("refs/pr/1")
    listed = dict(reversed(line.split("  ", 1)) for line in on_hub["SHA256SUMS"].decode().splitlines())
    assert {p: d for p, d in repo.sha256sums("refs/pr/1").items() if p not in (".gitattributes", "SHA256SUMS")} == (
        listed
    ), "the files that arrived are the ones the folder's SHA256SUMS lists, byte for byte"
    report = json.loads(on_hub["conversion-report.json"])
    assert f"source SHA-256: `{report['source']['sha256']}`" in pr.description
    assert re.search(r"- workflow run: \S+/actions/runs/\d+", pr.description), pr.description
    assert token not in log and read_token not in log, "the tokens are in no line of the log"
    assert hub.token_leaks(token) == [] and hub.stored_leaks(token) == []
    # the refused push: its step failed, the Hub holds nothing more, and the checked folder is the job's artifact
    assert "refused outcome=failure" in text
    assert re.search(r"Error: .*(403|write access)", text), text[-4000:]
    assert len(repo.pull_requests) == 1 and repo.refs["refs/pr/1"] == head
    refused = {Path(f).name for f in _artifact_files(artifacts, "refused-push")}
    assert {"config.json", "model.safetensors", "SHA256SUMS", "conversion-report.json"} <= refused
