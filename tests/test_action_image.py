"""Which image the action runs: the release's published image, the ``image`` input, or a build.

The decision reads the action's own tree (``GITHUB_ACTION_PATH``), never ``github.action_ref`` (empty in
composite steps). The image step's pulls and builds go through a fake engine here; the real ones run
in ``test_published_image.py``.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longformer_action.action.image import (
    LOCAL_TAG,
    PUBLISHED_IMAGE_FILE,
    plan_image,
    pull_with_retries,
    read_published_image,
)
from longformer_action.action.prepare_image import main as prepare_image

from .helpers import parse_github_output

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
DIGEST = "sha256:" + "ab" * 32
PUBLISHED = f"ghcr.io/owner/longformer-convert-action@{DIGEST}"


def _tree(tmp_path: Path, content: str | None) -> Path:
    tree = tmp_path / "action"
    tree.mkdir()
    if content is not None:
        (tree / PUBLISHED_IMAGE_FILE).write_text(content)
    return tree


# --- the decision ------------------------------------------------------------------------------------


def test_a_tree_without_a_name_builds(tmp_path):
    plan = plan_image("", _tree(tmp_path, None))
    assert (plan.source, plan.image, plan.warning) == ("build", "", "")
    assert "branch" in plan.reason
    assert plan.outputs()["build"] == "true"


def test_the_repository_itself_names_no_image():
    # main, branches and forks build: only the release commit adds the file
    assert not (ROOT / PUBLISHED_IMAGE_FILE).exists()
    assert plan_image("", ROOT).source == "build"


def test_a_release_tree_pulls_its_image_by_digest(tmp_path):
    tree = _tree(tmp_path, f"# pushed by the release workflow for v1.2.3\n\n{PUBLISHED}\n")
    assert read_published_image(tree) == PUBLISHED
    plan = plan_image("", tree)
    assert (plan.source, plan.image, plan.warning) == ("published", PUBLISHED, "")
    assert plan.outputs() == {
        "image": PUBLISHED,
        "image-source": "published",
        "image-reason": plan.reason,
        "image-warning": "",
        "build": "false",
    }


@pytest.mark.parametrize("given", ["ghcr.io/someone/fork:dev", "localhost/longformer-convert:act"])
def test_the_image_input_overrides_the_tree(tmp_path, given):
    plan = plan_image(given, _tree(tmp_path, PUBLISHED))
    assert (plan.source, plan.image) == ("input", given)


def test_image_build_forces_a_build_even_on_a_release(tmp_path):
    plan = plan_image("build", _tree(tmp_path, PUBLISHED))
    assert (plan.source, plan.image, plan.warning) == ("build", "", "")
    assert "`image: build`" in plan.reason


@pytest.mark.parametrize(
    "content",
    [
        "ghcr.io/owner/longformer-convert-action:v1\n",  # a tag moves: only a digest pins the image
        f"{PUBLISHED}\n{PUBLISHED}\n",
        "ghcr.io/owner/x@sha256:abc\n",
        f"--privileged {PUBLISHED}\n",
    ],
)
def test_a_bad_name_warns_and_builds(tmp_path, content):
    tree = _tree(tmp_path, content)
    with pytest.raises(ValueError, match="by digest"):
        read_published_image(tree)
    plan = plan_image("", tree)
    assert plan.source == "build" and plan.image == ""
    assert PUBLISHED_IMAGE_FILE in plan.warning and "building" in plan.warning


def test_an_empty_file_names_nothing(tmp_path):
    assert read_published_image(_tree(tmp_path, "# no image\n\n")) is None


# --- the image step, with a fake engine ------------------------------------------------------------


class Engine:
    """Records docker commands; ``pull_failures`` pulls fail before one succeeds."""

    def __init__(self, pull_failures: int = 0, build_status: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.pull_failures, self.build_status = pull_failures, build_status

    def __call__(self, args):
        self.calls.append(list(args))
        if args[1] == "pull":
            self.pull_failures -= 1
            return 1 if self.pull_failures >= 0 else 0
        return self.build_status


def _step(tmp_path: Path, engine: Engine, **env: str) -> tuple[int, str, dict[str, str], str]:
    output, summary = tmp_path / "output", tmp_path / "summary"
    output.write_text("")
    summary.write_text("")
    environ = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTION_PATH": "/action"}
    stream = io.StringIO()
    ticks = iter(range(0, 1000, 7))
    status = prepare_image(
        {**environ, **env}, stream, run=engine, sleep=lambda s: None, clock=lambda: float(next(ticks))
    )
    return status, stream.getvalue(), parse_github_output(output.read_text()), summary.read_text()


def test_published_image_is_pulled_and_not_built(tmp_path):
    engine = Engine()
    status, log, outputs, summary = _step(tmp_path, engine, IMAGE=PUBLISHED, IMAGE_SOURCE="published")
    assert status == 0
    assert engine.calls == [["docker", "pull", PUBLISHED]]
    assert outputs == {"image": PUBLISHED, "image-path": "pulled", "image-seconds": "7.0"}
    assert f"image: Pulled {PUBLISHED} in 7.0 s" in log
    assert summary.startswith(f"**Image:** Pulled `{PUBLISHED}` in 7.0 s")
    assert "::warning" not in log


def test_a_pull_is_retried(tmp_path):
    engine = Engine(pull_failures=2)
    status, log, outputs, _ = _step(tmp_path, engine, IMAGE=PUBLISHED, IMAGE_SOURCE="published")
    assert status == 0 and outputs["image-path"] == "pulled"
    assert [c[1] for c in engine.calls] == ["pull", "pull", "pull"]
    assert "3 attempts" in log


def test_a_failed_pull_warns_and_builds(tmp_path):
    engine = Engine(pull_failures=99)
    status, log, outputs, summary = _step(tmp_path, engine, IMAGE=PUBLISHED, IMAGE_SOURCE="published")
    assert status == 0
    assert [c[1] for c in engine.calls] == ["pull", "pull", "pull", "build"]
    assert engine.calls[-1] == ["docker", "build", "--tag", LOCAL_TAG, "/action"]
    warnings = [line for line in log.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 1 and PUBLISHED in warnings[0] and "building" in warnings[0]
    assert outputs["image"] == LOCAL_TAG and outputs["image-path"] == "built"
    assert "pulling the published image" in summary


def test_a_build_is_timed_and_reported(tmp_path):
    engine = Engine()
    status, log, outputs, summary = _step(tmp_path, engine, IMAGE="", IMAGE_SOURCE="build", IMAGE_REASON="no name")
    assert status == 0 and engine.calls == [["docker", "build", "--tag", LOCAL_TAG, "/action"]]
    assert "::group::docker build /action" in log
    assert summary.startswith(f"**Image:** Built from the action's Dockerfile `{LOCAL_TAG}` in 7.0 s: no name.")
    assert outputs["image-path"] == "built"


def test_a_failed_build_is_one_error(tmp_path):
    status, log, outputs, _ = _step(tmp_path, Engine(build_status=125), IMAGE="", IMAGE_SOURCE="build")
    assert status == 1
    assert len([line for line in log.splitlines() if line.startswith("::error")]) == 1
    assert outputs == {}


def test_a_given_image_is_neither_pulled_nor_built(tmp_path):
    engine = Engine()
    status, _, outputs, _ = _step(tmp_path, engine, IMAGE="localhost/x:1", IMAGE_SOURCE="input")
    assert status == 0 and engine.calls == []
    assert outputs["image"] == "localhost/x:1" and outputs["image-path"] == "given"


def test_the_tree_warning_is_shown(tmp_path):
    status, log, _, _ = _step(tmp_path, Engine(), IMAGE_SOURCE="build", IMAGE_WARNING="bad file; building")
    assert status == 0
    assert "::warning title=Published image not usable::bad file; building" in log


def test_pull_with_retries_gives_up_after_the_last_pause():
    pauses: list[float] = []
    assert pull_with_retries("x", run=lambda a: 1, sleep=pauses.append, delays=(1.0, 2.0)) == 0
    assert pauses == [1.0, 2.0]


# --- the action's steps as the runner runs them ------------------------------------------------------


def _steps() -> dict[str, dict]:
    return {s.get("id", s["name"]): s for s in ACTION["runs"]["steps"]}


def test_the_image_step_reads_the_plan_and_the_convert_step_runs_its_image():
    steps = _steps()
    image = steps["image"]
    assert image["run"].strip() == "python3 -m longformer_action.action.prepare_image"
    assert image["working-directory"] == "${{ github.action_path }}"
    for name in ("IMAGE", "IMAGE_SOURCE", "IMAGE_REASON", "IMAGE_WARNING"):
        assert image["env"][name] == f"${{{{ steps.plan.outputs.{name.lower().replace('_', '-')} }}}}"
    assert steps["convert"]["env"]["IMAGE"] == "${{ steps.image.outputs.image }}"
    assert ACTION["outputs"]["image"]["value"] == "${{ steps.image.outputs.image }}"
    assert all("action_ref" not in str(s.get("env", "")) + s.get("run", "") for s in ACTION["runs"]["steps"])


def test_validation_step_plans_the_published_image_from_the_action_path(tmp_path):
    # the validation step's script, run from a release tree, as the runner runs it
    tree = tmp_path / "action"
    tree.mkdir()
    (tree / PUBLISHED_IMAGE_FILE).write_text(PUBLISHED + "\n")
    workspace, output = tmp_path / "ws", tmp_path / "output"
    workspace.mkdir()
    (workspace / "ckpt.ckpt").write_bytes(b"")  # the checkpoint input must name a file of the workspace
    output.write_text("")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "GITHUB_ACTION_PATH": str(tree),
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_TEMP": str(tmp_path / "temp"),
        "GITHUB_OUTPUT": str(output),
    }
    step = _steps()["plan"]
    for key, expression in step["env"].items():
        name = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", expression).group(1)
        env[key] = "ckpt.ckpt" if name == "checkpoint" else str(ACTION["inputs"][name].get("default", ""))
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=tree, env=env, capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
    plan = parse_github_output(output.read_text())
    assert (plan["image"], plan["image-source"], plan["build"]) == (PUBLISHED, "published", "false")


@pytest.mark.parametrize("bad", ["--privileged", "a b", "-v/:/host"])
def test_an_image_input_that_is_not_a_reference_is_refused(tmp_path, bad):
    from longformer_action.action.inputs import InputError, plan_inputs

    (tmp_path / "a.ckpt").write_bytes(b"")
    env = {"INPUT_CHECKPOINT": "a.ckpt", "GITHUB_WORKSPACE": str(tmp_path), "RUNNER_TEMP": str(tmp_path / "t")}
    env |= {f"INPUT_{n.upper()}": str(s.get("default", "")) for n, s in ACTION["inputs"].items() if n != "checkpoint"}
    env["INPUT_IMAGE"] = bad
    with pytest.raises(InputError, match="not an image reference"):
        plan_inputs(env)


@pytest.mark.parametrize("env", [{}, {"IMAGE_SOURCE": ""}, {"IMAGE_SOURCE": "published", "IMAGE": ""}])
def test_a_missing_plan_builds(tmp_path, env):
    engine = Engine()
    status, _, outputs, _ = _step(tmp_path, engine, **env)
    assert status == 0 and [c[1] for c in engine.calls] == ["build"]
    assert outputs["image"] == LOCAL_TAG
