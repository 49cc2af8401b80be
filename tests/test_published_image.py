"""The published image under nektos/act, against a local OCI registry (Debian's ``docker-registry``).

A released action's tree names the image its release pushed, by digest (``action-image.txt``); a
branch, commit or fork names none. Each scenario is one act run of a tiny workflow that uses a copy of
this repository as ``uses: ./``:

- a tree naming an image in the registry converts without any build (its Dockerfile is broken on
  purpose, so a build would fail the job) and runs exactly the digest it names;
- a tree naming nothing builds the Dockerfile;
- a tree naming an image that cannot be pulled warns and builds;
- the release workflow's recording step, run verbatim, writes the pushed digest into the release's tree
  and moves the version tags to that commit.

The image is built once from the real Dockerfile (torch's CPU wheel from ``build/wheels`` when the
CPU index is out of reach, as ``.ci/run`` does) and pushed to the registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from longformer_action.action.image import LOCAL_TAG, PUBLISHED_IMAGE_FILE, read_published_image

from .helpers import act_stand_ins

ROOT = Path(__file__).resolve().parents[1]
CI_TOOLS = ROOT.parent / "shared" / "ci"
ACT_RUN = CI_TOOLS / "act-run.sh"
ENGINE = CI_TOOLS / "container-engine.sh"
WHEELS = ROOT / "build" / "wheels"
IMAGE = f"localhost/longformer-convert:published-{os.getpid()}"
REPOSITORY = "longformer-convert-action"
CHECKOUT = "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2"
# what a tree copied from this repository needs to build the image and run the action
TREE = ["action.yml", "Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "requirements", "longformer_action"]

pytestmark = [pytest.mark.container, pytest.mark.act]


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the published-image tests)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


# --- the registry and the image --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A local OCI registry on a free port; yields its ``host:port``."""
    _require(shutil.which("docker-registry") is not None, "docker-registry is missing: apt-get install docker-registry")
    _require(ACT_RUN.is_file() and ENGINE.is_file(), f"act-run.sh and container-engine.sh are missing in {CI_TOOLS}")
    subprocess.run(["bash", str(ENGINE), "setup"], check=True, capture_output=True)
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{_free_port()}"
    config = folder / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
                "http": {"addr": address},
                "log": {"level": "warn"},
            }
        )
    )
    log = (folder / "registry.log").open("w")
    server = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the registry did not start: {(folder / 'registry.log').read_text()[-2000:]}")
        yield address
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def registries_conf(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registries.conf that lets podman pull from the local registry over plain HTTP."""
    path = tmp_path_factory.mktemp("containers") / "registries.conf"
    path.write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    return path


def _wheels() -> Path:
    pin = re.search(r"torch==[\w.]+", (ROOT / "Dockerfile").read_text())
    assert pin, "the Dockerfile pins torch"
    if not list(WHEELS.glob(f"torch-{pin.group(0).split('==')[1]}*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", pin.group(0), "-d", str(WHEELS)],
            check=True,
        )
    return WHEELS


def _build_args() -> list[str]:
    # PyTorch's CPU index is out of reach here: the CPU wheel comes from build/wheels
    wheels = ["--volume", f"{_wheels()}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels"]
    return [*wheels, "--build-arg", "TORCH_INDEX_URL="]


@pytest.fixture(scope="module")
def published(registry: str, tmp_path_factory: pytest.TempPathFactory):
    """The image built from the Dockerfile and pushed to the registry; yields its reference by digest."""
    subprocess.run(["podman", "build", "--quiet", "--tag", IMAGE, *_build_args(), str(ROOT)], check=True)
    digest_file = tmp_path_factory.mktemp("push") / "digest"
    target = f"{registry}/{REPOSITORY}:v1.2.3"
    subprocess.run(
        ["podman", "push", "--quiet", "--tls-verify=false", "--digestfile", str(digest_file), IMAGE, target],
        check=True,
    )
    digest = digest_file.read_text().strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    reference = f"{registry}/{REPOSITORY}@{digest}"
    yield reference
    # the registry's port dies with it: drop the names that point there, and the built tag
    subprocess.run(["podman", "rmi", reference, IMAGE], capture_output=True)


# --- a repository that uses the action, run under act -------------------------------------------------


def _consumer_workflow() -> str:
    return f"""\
name: consume
on: push
permissions: {{}}
jobs:
  convert:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    steps:
      - uses: {CHECKOUT}
      - id: convert
        uses: ./
        with:
          checkpoint: tiny/best.ckpt
          base-model: tiny/base
          output-dir: model
          upload: "false"
      - name: Which image ran, and the folder's checksums
        env:
          IMAGE: ${{{{ steps.convert.outputs.image }}}}
        # the folder by its workspace path: under act, the container step's own model-dir output (its
        # container path) leaks into the composite's outputs
        run: |
          echo "ran-image=$IMAGE"
          cd "$GITHUB_WORKSPACE/model" && sha256sum --check --strict SHA256SUMS
"""


def _repository(folder: Path, *, names: str | None, broken_dockerfile: bool = False) -> Path:
    """A copy of the action's tree (naming ``names`` in action-image.txt, or nothing) as a git repository."""
    folder.mkdir(parents=True)
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, folder / name)
    if names is not None:
        (folder / PUBLISHED_IMAGE_FILE).write_text(f"# pushed by the release workflow\n{names}\n")
    if broken_dockerfile:
        with (folder / "Dockerfile").open("a") as f:
            f.write('RUN echo "this tree must not be built" && exit 97\n')
    subprocess.run(["git", "init", "--quiet", str(folder)], check=True)
    return folder


def _commit(folder: Path, message: str = "tree") -> str:
    git = ["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "add", "--all"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--message", message], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def _act(repo: Path, workflow: str, registries_conf: Path, *extra: str, event: dict | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "INPUT_"))}
    env["ACT_ARTIFACTS"] = str(repo.parent / f"{repo.name}-artifacts")
    env["CONTAINERS_REGISTRIES_CONF"] = str(registries_conf)
    env["ACT_BUILD_ARGS"] = " ".join(_build_args())
    command = ["bash", str(ACT_RUN), str(repo), "-W", workflow, *act_stand_ins(), *extra]
    if event is not None:
        event_file = repo.parent / f"{repo.name}-event.json"
        event_file.write_text(json.dumps(event))
        command += ["--eventpath", str(event_file)]
    start = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    log = result.stdout + result.stderr
    (repo.parent / f"{repo.name}-act.log").write_text(log)
    print(f"act ran {workflow} in {time.monotonic() - start:.0f} s (exit {result.returncode})")
    return result.returncode, log


def _consume(tmp_path: Path, registries_conf: Path, checkpoints, base_model, **tree) -> tuple[int, str]:
    repo = _repository(tmp_path / "repo", **tree)
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "consume.yml").write_text(_consumer_workflow())
    (repo / "tiny").mkdir()
    shutil.copy(checkpoints["wrapped-pytorch_lightning"], repo / "tiny" / "best.ckpt")
    shutil.copytree(base_model, repo / "tiny" / "base")
    _commit(repo)
    return _act(repo, ".github/workflows/consume.yml", registries_conf)


def _ran_image(log: str) -> list[str]:
    return re.findall(r"\|\s*ran-image=(\S+)", log)


def _checksums_passed(log: str) -> bool:
    return bool(re.search(r"\|\s*model\.safetensors: OK", log)) and "FAILED" not in log


# --- the scenarios -------------------------------------------------------------------------------------


def test_a_release_tree_pulls_its_image_and_builds_nothing(
    tmp_path, published, registries_conf, checkpoints, base_model
):
    # the image may already be in the store from an earlier run: remove the reference so it is pulled
    subprocess.run(["podman", "rmi", published], capture_output=True)
    status, log = _consume(tmp_path, registries_conf, checkpoints, base_model, names=published, broken_dockerfile=True)
    assert status == 0, log[-6000:]
    assert f"image: Pulled {published} in " in log
    assert "docker build" not in log and "this tree must not be built" not in log
    assert _ran_image(log) == [published]  # the digest that ran is the one the tree names
    assert _checksums_passed(log), log[-3000:]
    assert "::warning" not in log and "could not pull" not in log


def test_a_tree_without_a_name_builds(tmp_path, published, registries_conf, checkpoints, base_model):
    status, log = _consume(tmp_path, registries_conf, checkpoints, base_model, names=None)
    assert status == 0, log[-6000:]
    assert "image: Built from the action's Dockerfile" in log and "no published image for this ref" in log
    assert "docker pull" not in log
    assert _ran_image(log) == [LOCAL_TAG]
    assert _checksums_passed(log), log[-3000:]


def test_an_image_that_cannot_be_pulled_warns_and_builds(tmp_path, published, registries_conf, checkpoints, base_model):
    missing = published.split("@")[0] + "@sha256:" + "0" * 64
    status, log = _consume(tmp_path, registries_conf, checkpoints, base_model, names=missing)
    assert status == 0, log[-6000:]
    assert log.count(f"docker pull {missing}") == 1  # one log group around the attempts
    assert "could not pull" in log and "building the image from the action's Dockerfile instead" in log
    assert "image: Built from the action's Dockerfile" in log and "pulling the published image" in log
    assert _ran_image(log) == [LOCAL_TAG]


# --- the release's recording step ---------------------------------------------------------------------


def _release_workflow(registry_image: str, digest: str) -> str:
    """release.yml with its build steps (buildx, QEMU, GHCR: not available here) replaced by the local
    push's result; the checkout, the tag check and the recording step are release.yml's own."""
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    job = release["jobs"]["image"]
    steps = {s.get("id", s.get("name", s.get("uses"))): s for s in job["steps"]}
    record = steps["record"]
    assert record["env"]["IMAGE"] == "${{ steps.tag.outputs.image }}"
    record = {**record, "env": {**record["env"], "IMAGE": registry_image}}
    stand_in = {"id": "build", "name": "Stand-in for the build", "run": f'echo "digest={digest}" >> "$GITHUB_OUTPUT"'}
    job = {**job, "steps": [job["steps"][0], steps["tag"], stand_in, record]}
    triggers = release.pop(True)  # YAML 1.1 reads the key `on` as true
    return yaml.safe_dump({"on": triggers, **release, "jobs": {"image": job}}, sort_keys=False)


def test_the_release_records_the_pushed_digest_and_moves_the_tags(tmp_path, published, registries_conf):
    registry_image, digest = published.split("@")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(origin)], check=True)
    repo = _repository(tmp_path / "repo", names=None)
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "release.yml").write_text(_release_workflow(registry_image, digest))
    tagged = _commit(repo, "the commit a maintainer tags")
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "remote", "add", "origin", str(origin)], check=True)
    subprocess.run([*git, "tag", "v1.2.3"], check=True)
    subprocess.run([*git, "push", "--quiet", "origin", "HEAD:refs/heads/main", "refs/tags/v1.2.3"], check=True)
    # act copies the working tree (with .git) as actions/checkout would; the tag check and the step read the ref
    subprocess.run([*git, "checkout", "--quiet", "--detach", "v1.2.3"], check=True)
    status, log = _act(
        repo,
        ".github/workflows/release.yml",
        registries_conf,
        event={"ref": "refs/tags/v1.2.3", "repository": {"full_name": "owner/longformer-convert-action"}},
    )
    assert status == 0, log[-6000:]
    bare = ["git", "--git-dir", str(origin)]
    release = subprocess.run([*bare, "rev-parse", "v1.2.3^{commit}"], capture_output=True, text=True, check=True)
    major = subprocess.run([*bare, "rev-parse", "v1^{commit}"], capture_output=True, text=True, check=True)
    assert release.stdout == major.stdout
    parent = subprocess.run([*bare, "rev-parse", "v1.2.3^{commit}^"], capture_output=True, text=True, check=True)
    assert parent.stdout.strip() == tagged  # the release commit is the tagged one plus the record
    changed = subprocess.run(
        [*bare, "diff", "--name-only", tagged, "v1.2.3"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert changed == [PUBLISHED_IMAGE_FILE]
    main = subprocess.run([*bare, "rev-parse", "main"], capture_output=True, text=True, check=True)
    assert main.stdout.strip() == tagged  # main does not name an image: branches keep building
    # what `uses: owner/longformer-convert-action@v1` would fetch names the pushed image by digest
    clone = tmp_path / "at-v1"
    clone_args = ["--quiet", "--branch", "v1", str(origin), str(clone)]
    subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", *clone_args], check=True)
    assert read_published_image(clone) == published
