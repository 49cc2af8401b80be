"""Assertions shared by the tests."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def one_error_line(result) -> str:
    """Assert the command failed with exactly one ``Error:`` line and no traceback; return it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def parse_github_output(text: str) -> dict[str, str]:
    """A ``GITHUB_OUTPUT`` file read as the runner reads it: ``name<<DELIM`` ... ``DELIM`` and ``name=value``."""
    values: dict[str, str] = {}
    if not text:
        return values
    lines = text.split("\n")
    assert lines[-1] == "", "the file should end with a newline"
    lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            assert name and delimiter, f"malformed heredoc header {line!r}"
            assert delimiter in lines[i + 1 :], f"heredoc {name!r} is not terminated by {delimiter!r}"
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
    return values


class Runs:
    """Real ``longformer-convert convert`` processes, each one optionally held at a stage by the test pause.

    ``LONGFORMER_CONVERT_TEST_PAUSE=STAGE:FOLDER`` (``cancel.pause_point``) makes a run create
    ``FOLDER/paused-<pid>`` when it reaches ``STAGE`` and wait there until ``FOLDER/resume`` exists.
    """

    def __init__(self, pause_folder) -> None:
        self.pause_folder = pause_folder
        self.started: list = []

    def start(self, checkpoint, output, base_model, *extra, pause: str | None = None):
        import os
        import subprocess
        import sys

        from longformer_action.cancel import PAUSE_ENV

        environ = {**os.environ, "HF_HUB_OFFLINE": "1"}
        environ.pop(PAUSE_ENV, None)
        if pause:
            environ[PAUSE_ENV] = f"{pause}:{self.pause_folder}"
        command = [sys.executable, "-m", "longformer_action", "convert", "--checkpoint", str(checkpoint)]
        command += ["--output", str(output), "--base-model", str(base_model), *map(str, extra)]
        # a session of its own: a signal the test sends reaches this process alone
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ, start_new_session=True
        )
        self.started.append(process)
        return process

    def wait_paused(self, process, limit: float = 300.0) -> None:
        """Wait until ``process`` waits at its pause (a bound, not a timing assertion)."""
        import time

        marker = self.pause_folder / f"paused-{process.pid}"
        deadline = time.monotonic() + limit
        while not marker.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"the run ended (exit {process.returncode}) before its pause:\n{err[-4000:]}")
            assert time.monotonic() < deadline, f"the run did not reach its pause in {limit:.0f} s"
            time.sleep(0.05)

    def resume(self) -> None:
        (self.pause_folder / "resume").touch()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.communicate()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def trained_module(base: Path, checkpoint: Path, *, task: str, layout: str = "wrapped", **hparams: Any) -> Any:
    """The LightningModule that wrote ``checkpoint`` (``trained_checkpoint``), rebuilt with its weights, in eval
    mode."""
    import torch

    from longformer_action import demo

    module = demo.make_module(base, task=task, layout=layout, **hparams)
    module.load_state_dict(torch.load(checkpoint, weights_only=False, map_location="cpu")["state_dict"])
    return module.eval()


def once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], T]) -> T:
    """``make(folder)`` run once per test run, whatever the number of xdist workers; its result is JSON data.

    Without xdist it simply runs. Under xdist the result is kept as JSON in the run's shared folder,
    made by the first worker that asks, under a file lock; ``Path`` results come back as ``Path``.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "shared"
    shared.mkdir(exist_ok=True)
    done = shared / f"{name}.json"
    with FileLock(str(done) + ".lock"):
        if done.is_file():
            return _decode(json.loads(done.read_text()))
        folder = shared / name
        folder.mkdir()
        result = make(folder)
        done.write_text(json.dumps(_encode(result)))
        return result


def _encode(value: Any) -> Any:
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, dict):
        return {"__dict__": [[k, _encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__tuple__": [_encode(v) for v in value]}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__path__" in value:
        return Path(value["__path__"])
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _decode(v) for k, v in value["__dict__"]}
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    return value


def act_stand_ins() -> list[str]:
    """act's arguments that serve ``actions/attest`` (as action.yml pins it) from ``tests/act/attest``: act fetches
    every remote action a composite action names, even one whose step is skipped, and github.com is out of reach."""
    root = Path(__file__).resolve().parents[1]
    attest = re.search(r"uses: (actions/attest@[0-9a-f]{40})", (root / "action.yml").read_text())
    assert attest, "action.yml pins actions/attest by commit"
    return ["--local-repository", f"{attest[1]}={root / 'tests' / 'act' / 'attest'}"]
