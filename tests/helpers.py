"""Assertions shared by the tests."""

from __future__ import annotations


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
