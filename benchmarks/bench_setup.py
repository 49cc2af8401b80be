"""The action's setup time under act, cold: pulling the published image versus building the Dockerfile.

Each path runs the real action (``uses: ./`` on a copy of this repository) in one act run of a tiny
workflow that converts a tiny Trainer checkpoint, with an empty podman store of its own (no image, no
layer cache), as a fresh GitHub runner starts:

- pull: the tree names the image by digest (``action-image.txt``) in a local OCI registry (Debian's
  ``docker-registry`` on 127.0.0.1), where the image was pushed beforehand;
- build: the tree names nothing, so the action builds the Dockerfile.

The base image (``python:3.11-slim``) is loaded into the build path's store before the clock starts
(GitHub's build would pull it from Docker Hub), and torch's CPU wheel comes from a local folder
(GitHub's build downloads it from PyTorch's index): both favour the build path.

    python benchmarks/bench_setup.py [--repeat 3] [--work-dir bench-out/setup] [--json-out FILE]

Needs podman, docker-registry and act-run.sh (``../shared/ci``) as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI_TOOLS = ROOT.parent / "shared" / "ci"
ACT_RUN = CI_TOOLS / "act-run.sh"
ENGINE = CI_TOOLS / "container-engine.sh"
IMAGE = "localhost/longformer-convert:bench-setup"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
TREE = ["action.yml", "Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "requirements", "longformer_action"]
CHECKOUT = "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2"

WORKFLOW = f"""\
name: setup-bench
on: push
permissions: {{}}
jobs:
  convert:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    steps:
      - uses: {CHECKOUT}
      - uses: ./
        with:
          checkpoint: tiny/best.ckpt
          base-model: tiny/base
          output-dir: model
          upload: "false"
"""


def log(message: str) -> None:
    print(f"bench_setup: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(folder: Path) -> tuple[subprocess.Popen, str]:
    address = f"127.0.0.1:{free_port()}"
    config = folder / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'registry-data'}\n"
        f"http:\n  addr: {address}\nlog:\n  level: warn\n"
    )
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=1):
                return server, address
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the registry did not start")


def wheels_args(work: Path) -> list[str]:
    pin = re.search(r"torch==[\w.]+", (ROOT / "Dockerfile").read_text())
    assert pin
    wheels = ROOT / "build" / "wheels"
    if not list(wheels.glob(f"torch-{pin.group(0).split('==')[1]}*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", pin.group(0), "-d", str(wheels)])
    return ["--volume", f"{wheels}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels",
            "--build-arg", "TORCH_INDEX_URL="]  # fmt: skip


def store(folder: Path) -> dict[str, str]:
    """An empty podman store of its own: the environment that points podman (and act's steps) at it."""
    folder.mkdir(parents=True)
    conf = folder / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{folder / "graph"}"\nrunroot = "{folder / "run"}"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf)}


def repository(folder: Path, names: str | None) -> Path:
    from longformer_action import demo

    folder.mkdir(parents=True)
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, folder / name)
    if names:
        (folder / "action-image.txt").write_text(names + "\n")
    (folder / ".github" / "workflows").mkdir(parents=True)
    (folder / ".github" / "workflows" / "bench.yml").write_text(WORKFLOW)
    base = demo.make_base_model(folder / "tiny" / "base")
    demo.train_checkpoint(base, folder / "tiny" / "best.ckpt")
    git = ["git", "-C", str(folder), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return folder


def run_path(name: str, repo: Path, env: dict[str, str], folder: Path) -> dict[str, float | str]:
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(ACT_RUN), str(repo), "-W", ".github/workflows/bench.yml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.monotonic() - start
    text = result.stdout + result.stderr
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "act.log").write_text(text)
    if result.returncode != 0:
        raise SystemExit(f"{name}: act failed (exit {result.returncode}); log: {folder / 'act.log'}")
    setup = re.search(r"\|\s*image: (Pulled|Built from the action's Dockerfile) (\S+) in ([\d.]+) s", text)
    convert = re.search(r"Success - Main Convert, check and push \[([\d.]+)(m?s)\]", text)
    assert setup, f"{name}: no image line in the log"
    convert_s = float(convert.group(1)) / (1000 if convert and convert.group(2) == "ms" else 1) if convert else -1.0
    return {"path": setup.group(1).split()[0].lower(), "image": setup.group(2), "setup_s": float(setup.group(3)),
            "convert_s": round(convert_s, 1), "act_wall_s": round(wall, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench-out" / "setup")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path, alternating their order")
    args = parser.parse_args()
    for tool in ("podman", "docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    work = args.work_dir.resolve()
    if work.exists():
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(["bash", str(ENGINE), "setup"], check=True, capture_output=True)
    build_args = wheels_args(work)

    log("building the image to publish (the main store's layer cache may serve it)")
    subprocess.run(
        ["podman", "build", "-q", "--tag", IMAGE, *build_args, str(ROOT)], check=True, stdout=subprocess.DEVNULL
    )
    size = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    server, registry = start_registry(work)
    try:
        digest_file = work / "digest"
        subprocess.run(["podman", "push", "-q", "--tls-verify=false", "--digestfile", str(digest_file), IMAGE,
                        f"{registry}/longformer-convert-action:bench"], check=True)  # fmt: skip
        published = f"{registry}/longformer-convert-action@{digest_file.read_text().strip()}"
        registries = work / "registries.conf"
        registries.write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "INPUT_"))}
        base_env |= {"CONTAINERS_REGISTRIES_CONF": str(registries), "ACT_BUILD_ARGS": " ".join(build_args)}
        base_archive = work / "base-image.tar"
        subprocess.run(["podman", "save", "-q", "-o", str(base_archive), BASE_IMAGE], check=True)

        repos = {
            name: repository(work / name / "repo", names) for name, names in (("pull", published), ("build", None))
        }
        runs: dict[str, list[dict]] = {"pull": [], "build": []}
        for rep in range(args.repeat):
            for name in ("pull", "build") if rep % 2 == 0 else ("build", "pull"):
                folder = work / name / f"run{rep}"
                env = {**base_env, **store(folder / "store"), "ACT_ARTIFACTS": str(folder / "artifacts")}
                if name == "build":  # the base image, as Docker Hub would give it, before the clock starts
                    load = ["podman", "load", "-q", "-i", str(base_archive)]
                    subprocess.run(load, env=env, check=True, capture_output=True)
                log(f"{name} path, run {rep + 1}/{args.repeat}: act with an empty store")
                load_before = os.getloadavg()[0]
                result = run_path(name, repos[name], env, folder)
                result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                runs[name].append(result)
                log(f"{name}: {result}")
                # empty the run's own store (never `podman system reset`: it also touches shared configuration)
                subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True)
                shutil.rmtree(folder / "store", ignore_errors=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    medians = {name: statistics.median(r["setup_s"] for r in runs[name]) for name in runs}
    ratio = medians["pull"] / medians["build"]
    summary = {
        "image_bytes": int(size),
        "nproc": os.cpu_count(),
        "repeat": args.repeat,
        "setup_s_median": medians,
        "setup_s_range": {
            name: [min(r["setup_s"] for r in rs), max(r["setup_s"] for r in rs)] for name, rs in runs.items()
        },
        "pull_over_build": round(ratio, 3),
        "target": "pull <= 0.3x build (medians)",
        "met": ratio <= 0.3,
        "runs": runs,
    }
    print(json.dumps(summary, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
