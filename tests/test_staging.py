"""All or nothing output: the lock, the claim on --output, atomic publishing, stale staging, free space.

Runs to one output are real processes where the point is a second process (a concurrent run, a
killed run); a change at ``--output`` "during the run" is made at a known stage through the test
pause (``cancel.pause_point``), in a real process once and in-process for the variants.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from longformer_action import cancel
from longformer_action.errors import PathConflict
from longformer_action.writing import claim, lock, staging
from longformer_action.writing.claim import _entries
from longformer_action.writing.lock import (
    MODEL_DIR,
    OWNER_NAME,
    PREFIX,
    STAGING_SUFFIX,
    Owner,
    lock_path,
    process_start_ticks,
)
from longformer_action.writing.rename import RENAME_EXCHANGE, RENAME_NOREPLACE, Unsupported, renameat2

from .helpers import Runs, error_lines, one_error_line


@pytest.fixture()
def runs(tmp_path):
    helper = Runs(tmp_path / "pause")
    yield helper
    helper.stop_all()


@pytest.fixture()
def work(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture()
def at_stage(monkeypatch):
    """Run ``action()`` when an in-process run reaches ``stage`` (where the test pause would wait)."""

    def install(stage: str, action) -> None:
        original = cancel.pause_point

        def hook(name: str) -> None:
            if name == stage:
                action()
            original(name)

        monkeypatch.setattr(cancel, "pause_point", hook)

    return install


def _convert(cli, checkpoint, output, base_model, *extra):
    return cli("convert", "--checkpoint", checkpoint, "--output", output, "--base-model", base_model, *extra)


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _ours(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(PREFIX))


# --- renameat2: why publishing needs it ---------------------------------------------------------------


def test_plain_rename_replaces_an_empty_folder_and_renameat2_noreplace_does_not(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "f").write_text("a")
    os.rename(tmp_path / "a", tmp_path / "b")  # the empty folder b is gone, silently
    assert (tmp_path / "b" / "f").read_text() == "a"
    with pytest.raises(FileExistsError):
        renameat2(tmp_path / "b", tmp_path / "c", RENAME_NOREPLACE)
    assert (tmp_path / "b" / "f").exists() and (tmp_path / "c").is_dir()


def test_renameat2_exchange_swaps(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "in-x").touch()
    (tmp_path / "y").write_text("y")
    renameat2(tmp_path / "x", tmp_path / "y", RENAME_EXCHANGE)
    assert (tmp_path / "x").read_text() == "y" and (tmp_path / "y" / "in-x").exists()


# --- a long output name ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [240, 255])
def test_a_long_legal_output_name_converts(cli, checkpoints, base_model, work, length):
    out = work / ("m" * length)  # 255 bytes is the limit of one name (NAME_MAX)
    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 0, result.stderr
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert _left(work) == [out.name]


def test_staging_and_lock_names_are_fixed_size(tmp_path):
    long = tmp_path / ("m" * 255)
    assert len(lock_path(long).name) == len(lock_path(tmp_path / "m").name) < 64
    assert lock_path(long) != lock_path(tmp_path / ("m" * 254))


# --- one run per output -------------------------------------------------------------------------------


def test_two_runs_started_together_exactly_one_wins(runs, checkpoints, base_model, work):
    out = work / "model"
    first = runs.start(checkpoints["plain"], out, base_model, pause="check")
    second = runs.start(checkpoints["wrapped-lightning"], out, base_model, pause="check")
    # the winner holds the lock and waits before its check; the loser fails at the lock, at once
    processes = {first, second}
    deadline = time.monotonic() + 300  # a bound, not a timing assertion
    while time.monotonic() < deadline:
        ended = [p for p in processes if p.poll() is not None]
        paused = [p for p in processes if (runs.pause_folder / f"paused-{p.pid}").exists()]
        if ended or len(paused) == 2:
            break
        time.sleep(0.05)
    assert len(ended) == 1, "exactly one run fails while the other holds the output"
    loser = ended[0]
    (winner,) = processes - {loser}
    _, err = loser.communicate(timeout=60)
    assert loser.returncode == 1, err
    assert error_lines(err) == [
        f"Error: another conversion is writing {out} (PID {winner.pid} on host {socket.gethostname()}, started "
        f"{json.loads(lock_path(out).read_text())['started']}). Wait for it to finish, or choose another "
        "--output."
    ]
    assert "read:" not in err, "the loser stops before the slow work"
    assert len([n for n in _ours(work) if n.endswith(".partial")]) == 1, "the loser left no staging folder"
    runs.wait_paused(winner)
    runs.resume()
    _, err = winner.communicate(timeout=300)
    assert winner.returncode == 0, err
    assert f"done: {out}" in err
    assert _left(work) == ["model"]
    source = json.loads((out / "conversion-report.json").read_text())["source"]["path"]
    assert Path(source).name == Path(checkpoints["wrapped-lightning" if winner is second else "plain"]).name


def test_the_lock_file_names_its_run_and_is_removed(cli, checkpoints, base_model, work, at_stage):
    seen = {}

    def look() -> None:
        seen["lock"] = json.loads(lock_path(work / "model").read_text())
        seen["ours"] = _ours(work)

    at_stage("check", look)
    result = _convert(cli, checkpoints["plain"], work / "model", base_model)
    assert result.exit_code == 0, result.stderr
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["host"] == socket.gethostname()
    assert seen["lock"]["output"] == str(work / "model")
    assert len(seen["ours"]) == 2  # the lock and the staging folder, while the run works
    assert _left(work) == ["model"]


def test_where_locks_are_not_supported_the_run_says_so(cli, checkpoints, base_model, work, monkeypatch):
    monkeypatch.setattr(lock, "try_flock", lambda fd: None)
    result = _convert(cli, checkpoints["plain"], work / "model", base_model)
    assert result.exit_code == 0, result.stderr
    assert "Warning: output: " in result.stderr
    assert "cannot be locked (flock): runs to the same output are not detected" in result.stderr
    assert _left(work) == ["model"]


# --- nothing at --output that the run did not check is replaced ---------------------------------------


def test_without_locks_a_run_that_loses_at_publish_fails_cleanly(
    cli, checkpoints, base_model, work, at_stage, monkeypatch
):
    # where the file system cannot lock, two runs get past the start; the one that publishes second loses
    from longformer_action.commands.convert import ConvertOptions, convert
    from longformer_action.progress import Progress

    monkeypatch.setattr(lock, "try_flock", lambda fd: None)
    out = work / "model"

    other_log: list[io.StringIO] = []

    def the_other_run_publishes_first() -> None:
        if not other_log:  # once: the other run reaches this stage too
            other_log.append(io.StringIO())
            options = ConvertOptions(base_model=str(base_model))
            convert(checkpoints["wrapped-lightning"], out, options, Progress(other_log[0]))

    at_stage("publish", the_other_run_publishes_first)
    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"Error: {out} changed during the run (a folder holding README.md, SHA256SUMS, config.json and " in line
    assert "nothing was there when the run checked it, so nothing was replaced" in line
    assert "done:" not in result.stderr and f"done: {out}" in other_log[0].getvalue()
    report = json.loads((out / "conversion-report.json").read_text())
    assert Path(report["source"]["path"]).name == Path(checkpoints["wrapped-lightning"]).name, "the winner's folder"
    assert _left(work) == ["model"]


def test_a_file_created_in_output_during_a_run_is_kept(runs, checkpoints, base_model, work):
    out = work / "model"
    run = runs.start(checkpoints["plain"], out, base_model, pause="check")
    runs.wait_paused(run)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    runs.resume()
    _, err = run.communicate(timeout=300)
    assert run.returncode == 1, err
    assert error_lines(err) == [
        f"Error: {out} changed during the run (a folder holding notes.txt appeared there); nothing was there when "
        "the run checked it, so nothing was replaced and the converted folder was removed. Look at what is at "
        f"{out} now, then run again (with --overwrite to replace it)."
    ]
    assert "done:" not in err and "Traceback" not in err
    assert _left(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert _left(work) == ["model"]


@pytest.mark.parametrize("portable", [False, True], ids=["renameat2", "portable"])
def test_an_empty_folder_that_appears_is_not_replaced(
    cli, checkpoints, base_model, work, at_stage, monkeypatch, portable
):
    if portable:
        monkeypatch.setattr(staging, "renameat2", _unsupported)
    out = work / "model"
    at_stage("publish", out.mkdir)
    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 1
    assert "(an empty folder appeared there); nothing was there when the run checked it" in one_error_line(result)
    assert _left(out) == [] and _left(work) == ["model"]


def test_a_file_added_to_a_checked_empty_folder_is_kept(cli, checkpoints, base_model, work, at_stage):
    out = work / "model"
    out.mkdir()
    at_stage("check", lambda: (out / "late.txt").write_text("late"))
    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 1
    assert "changed during the run (new: late.txt); it was an empty folder when the run checked it" in one_error_line(
        result
    )
    assert _left(out) == ["late.txt"] and _left(work) == ["model"]


def _replace_folder(out: Path, aside: Path) -> None:
    out.rename(aside)
    out.mkdir()
    (out / "theirs.txt").write_text("theirs")


@pytest.mark.parametrize("portable", [False, True], ids=["renameat2", "portable"])
def test_overwrite_replaces_only_the_folder_it_checked(
    cli, checkpoints, base_model, work, at_stage, monkeypatch, portable
):
    if portable:
        monkeypatch.setattr(staging, "renameat2", _unsupported)
    out = work / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    at_stage("check", lambda: _replace_folder(out, work / "moved"))
    result = _convert(cli, checkpoints["plain"], out, base_model, "--overwrite")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "changed during the run (it was replaced by a folder holding theirs.txt); it was a folder of 1 entry" in line
    assert _left(out) == ["theirs.txt"] and _left(work) == ["model", "moved"]


def test_overwrite_refuses_a_checked_folder_that_gained_a_file(cli, checkpoints, base_model, work, at_stage):
    out = work / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    at_stage("check", lambda: (out / "new.txt").write_text("new"))
    result = _convert(cli, checkpoints["plain"], out, base_model, "--overwrite")
    assert result.exit_code == 1
    assert "(new: new.txt); it was a folder of 1 entry when the run checked it" in one_error_line(result)
    assert _left(out) == ["new.txt", "old.txt"] and _left(work) == ["model"]


@pytest.mark.parametrize("portable", [False, True], ids=["renameat2", "portable"])
def test_overwrite_of_an_unchanged_folder_replaces_it(cli, checkpoints, base_model, work, monkeypatch, portable):
    if portable:
        monkeypatch.setattr(staging, "renameat2", _unsupported)
    out = work / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    result = _convert(cli, checkpoints["plain"], out, base_model, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert "old.txt" not in _left(out) and (out / "model.safetensors").is_file()
    assert _left(work) == ["model"]


@pytest.mark.parametrize("portable", [False, True], ids=["renameat2", "portable"])
def test_something_at_an_absent_output_is_not_replaced(
    cli, checkpoints, base_model, work, at_stage, monkeypatch, portable
):
    if portable:
        monkeypatch.setattr(staging, "renameat2", _unsupported)
    out = work / "model"
    at_stage("publish", lambda: out.write_text("a file"))
    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 1
    assert "(a file appeared there); nothing was there when the run checked it" in one_error_line(result)
    assert out.read_text() == "a file" and _left(work) == ["model"]


def _unsupported(*args) -> None:
    raise Unsupported


def test_a_swap_that_cannot_be_undone_keeps_what_was_there(cli, checkpoints, base_model, work, at_stage, monkeypatch):
    out = work / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    at_stage("check", lambda: _replace_folder(out, work / "moved"))
    real, calls = renameat2, []

    def second_exchange_fails(source, target, flags):
        calls.append(flags)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(source, target, flags)

    monkeypatch.setattr(staging, "renameat2", second_exchange_fails)
    result = _convert(cli, checkpoints["plain"], out, base_model, "--overwrite")
    assert result.exit_code == 1
    line = one_error_line(result)
    (kept,) = [p for p in work.iterdir() if p.name.endswith(".replaced")]
    assert f"and what was there could not be put back: it is kept at {kept}" in line
    assert _left(kept) == ["theirs.txt"], "the folder swapped in during the run is kept, not removed"
    assert _left(work) == sorted(["model", "moved", kept.name])


def test_an_unreadable_output_folder_is_one_error(cli, checkpoints, base_model, work, monkeypatch):
    out = work / "model"
    out.mkdir()
    real = _entries

    def entries(folder):
        if Path(folder) == out:
            raise PermissionError(13, "Permission denied")
        return real(folder)

    monkeypatch.setattr(claim, "_entries", entries)
    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 1
    assert f"cannot read output folder {out} (Permission denied)" in one_error_line(result)
    assert _left(work) == ["model"]


# --- stale staging folders ------------------------------------------------------------------------------


def test_a_killed_run_leaves_staging_that_the_next_run_removes(runs, cli, checkpoints, base_model, work, monkeypatch):
    out = work / "model"
    run = runs.start(checkpoints["plain"], out, base_model, pause="check")
    runs.wait_paused(run)
    (partial,) = [p for p in work.iterdir() if p.name.endswith(STAGING_SUFFIX)]
    owner = json.loads((partial / OWNER_NAME).read_text())
    assert (owner["pid"], owner["output"]) == (run.pid, str(out))
    assert owner["start_ticks"] == process_start_ticks(run.pid)

    # while its run lives, its folder is left alone: by its lock, and (where locks fail) by PID and start time
    lines: list[str] = []
    assert staging.remove_stale(out, lines.append) == []
    with monkeypatch.context() as patched:
        patched.setattr(lock, "try_flock", lambda fd: None)
        assert staging.remove_stale(out, lines.append) == []
    alive = f"output: left {partial.name} alone: its run is alive (PID {run.pid} on host {socket.gethostname()}"
    assert len(lines) == 2 and all(line.startswith(alive) for line in lines), lines
    assert (partial / "model" / "model.safetensors").is_file()

    run.kill()  # SIGKILL: no cleanup can run
    run.communicate(timeout=60)
    assert len(_ours(work)) == 2, "the killed run's staging folder and lock file stay, as they must"

    result = _convert(cli, checkpoints["plain"], out, base_model)
    assert result.exit_code == 0, result.stderr
    removed = [line for line in result.stderr.splitlines() if line.startswith("output: removed")]
    assert len(removed) == 1 and partial.name in removed[0] and f"(PID {run.pid} on host" in removed[0], removed
    assert _left(work) == ["model"]


def test_where_locks_fail_a_dead_or_reused_pid_marks_a_staging_folder_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "try_flock", lambda fd: None)
    out = tmp_path / "model"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me = Owner.current(out)
    owners = {
        "gone": Owner(**{**me.__dict__, "pid": int(finished.stdout)}),
        "reused": Owner(**{**me.__dict__, "start_ticks": (me.start_ticks or 0) + 1}),  # same PID, another start
        "alive": me,
        "elsewhere": Owner(**{**me.__dict__, "host": "another-host"}),
        "other-output": Owner(**{**me.__dict__, "pid": int(finished.stdout), "output": str(tmp_path / "x")}),
    }
    folders = {}
    for name, owner in owners.items():
        folder = tmp_path / f"{PREFIX}{os.urandom(8).hex()}{STAGING_SUFFIX}"
        (folder / MODEL_DIR).mkdir(parents=True)
        (folder / OWNER_NAME).write_text(owner.to_json())
        folders[name] = folder
    lines: list[str] = []
    removed = staging.remove_stale(out, lines.append)
    assert sorted(removed) == sorted([folders["gone"], folders["reused"]])
    assert {name for name, folder in folders.items() if folder.exists()} == {"alive", "elsewhere", "other-output"}
    assert owners["alive"].process_alive() is True
    assert owners["reused"].process_alive() is False and owners["gone"].process_alive() is False
    assert owners["elsewhere"].process_alive() is None


def test_a_stale_folder_that_cannot_be_removed_is_not_reported_removed(tmp_path, monkeypatch):
    out = tmp_path / "model"
    folder = tmp_path / f"{PREFIX}{os.urandom(8).hex()}{STAGING_SUFFIX}"
    folder.mkdir()
    (folder / OWNER_NAME).write_text(Owner.current(out).to_json())  # nobody holds its lock
    monkeypatch.setattr(staging.shutil, "rmtree", lambda *args, **kwargs: None)
    lines: list[str] = []
    assert staging.remove_stale(out, lines.append) == []
    assert len(lines) == 1 and lines[0].startswith(f"output: could not remove {folder.name}, ")
    assert lines[0].endswith("remove it by hand")


def test_process_start_ticks_tell_processes_apart():
    mine = process_start_ticks(os.getpid())
    assert isinstance(mine, int) and mine > 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_start_ticks(child.pid) >= mine
    finally:
        child.kill()
        child.wait()
    assert process_start_ticks(child.pid) is None


# --- free space, known before anything is written ----------------------------------------------------------


def test_too_little_free_space_fails_before_the_slow_part(cli, checkpoints, base_model, work, monkeypatch):
    asked = []
    real = os.statvfs

    def statvfs(path):
        asked.append(path)
        return SimpleNamespace(f_bavail=10, f_frsize=4096) if PREFIX in str(path) else real(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    result = _convert(cli, checkpoints["plain"], work / "model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert re.search(r"the folder needs \d+\.\d MB \(\d+\.\d kB of weights, [^)]*\), and the file system of ", line)
    assert f"{work} has 41.0 kB free. Free space there" in line
    assert "save: failed" in result.stderr and "check:" not in result.stderr
    assert asked and all(Path(p).parent == work for p in asked)
    assert _left(work) == []


def test_the_space_needed_covers_what_is_written(cli, checkpoints, base_model, work, monkeypatch):
    planned = {}
    original = staging.StagedOutput.ensure_space

    def record(self, parts, **kwargs):
        planned.update(parts)
        return original(self, parts, **kwargs)

    monkeypatch.setattr(staging.StagedOutput, "ensure_space", record)
    result = _convert(cli, checkpoints["plain"], work / "model", base_model)
    assert result.exit_code == 0, result.stderr
    written = sum(p.stat().st_size for p in (work / "model").iterdir())
    weights = (work / "model" / "model.safetensors").stat().st_size
    assert sum(planned.values()) >= written
    assert weights - 16384 < planned["of weights"] <= weights  # the header is the difference


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="mounting a tmpfs needs root and unshare")
def test_a_small_real_file_system_fails_with_both_figures_and_a_big_one_converts(checkpoints, base_model, tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    convert = [sys.executable, "-m", "longformer_action", "convert", "--checkpoint", str(checkpoints["plain"])]
    convert += ["--base-model", str(base_model), "--no-check", "--output"]
    free = f"{sys.executable} -c 'import os, sys; s = os.statvfs(sys.argv[1]); print(s.f_bavail * s.f_frsize)'"
    script = (
        f"mount -t tmpfs -o size=512k tmpfs {small} && mount -t tmpfs -o size=4m tmpfs {big} && "
        f"{free} {small} || exit 1; "
        f"({' '.join(convert)} {small}/model 2>{tmp_path}/small.err; echo status $? >{tmp_path}/small.status) & "
        f"{' '.join(convert)} {big}/model; big=$?; wait; "
        f"cat {tmp_path}/small.status; cat {tmp_path}/small.err >&2; "
        f'[ $big = 0 ] && echo "small holds: $(ls -A {small})" && ls -A {big}/model'
    )
    # the run that fails on the small file system and the one that converts on the big one, side by side
    # a mount namespace of its own: the file systems vanish with the process
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    small_free = int(result.stdout.splitlines()[0])
    assert "status 1" in result.stdout
    (line,) = error_lines(result.stderr)
    figures = re.search(rf"the folder needs (\S+ \S+) \(.*\), and the file system of {small} has (\S+ \S+) free", line)
    assert figures, line
    needs, has = (_bytes(figure) for figure in figures.groups())
    assert has <= small_free < needs, (line, small_free)  # the run's own lock and record take a page or two
    listing = result.stdout.split("status 1", 1)[1].splitlines()
    assert "small holds: " in listing, "nothing was left on the small file system"
    assert "model.safetensors" in listing and "config.json" in listing
    assert not (small / "model").exists() and not (big / "model").exists(), "the mounts were the namespace's own"


def _bytes(figure: str) -> float:
    value, unit = figure.split()
    return float(value) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


# --- outputs apart from the inputs ---------------------------------------------------------------------------


def test_check_apart_sees_through_symbolic_links(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "best.ckpt").write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(runs)
    with pytest.raises(PathConflict, match=r"--output .*link holds the checkpoint .*best\.ckpt"):
        claim.check_apart([("--output", link)], [("the checkpoint", runs / "best.ckpt")], replaced=link)


def test_check_apart_allows_new_paths_beside_and_inside_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    read = [("the checkpoint", tmp_path / "best.ckpt"), ("the base model's folder", base)]
    # a new folder inside the base model's folder, and a new report beside it, replace nothing
    claim.check_apart([("--output", base / "model"), ("--report", base / "r.json")], read, replaced=base / "model")
    claim.check_apart([("--output", tmp_path / "model")], read, replaced=tmp_path / "model")
    # an existing path inside an input would be replaced
    with pytest.raises(PathConflict, match="is inside the base model's folder"):
        claim.check_apart([("--report", base / "config.json")], read)
    (base / "old").mkdir()
    with pytest.raises(PathConflict, match="the converted folder would replace a part of it"):
        claim.check_apart([("--output", base / "old")], read, replaced=base / "old")
