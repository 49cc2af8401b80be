"""File-system failures are one ``Error:`` line with the real cause and a fix that works.

Writes: a full disk on a real small tmpfs (in a mount namespace of its own), a real file size limit
(``RLIMIT_FSIZE``), and an ``OSError`` injected at every write of the folder. Reads: a dangling link, a
Git LFS pointer, a name in another Unicode normalization, a name that is not UTF-8, a file the user
cannot read (a real unprivileged process).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from longformer_action.progress import human_bytes

from .helpers import one_error_line

ROOT = os.geteuid() == 0
needs_namespaces = pytest.mark.skipif(
    not ROOT or shutil.which("unshare") is None, reason="mounting a tmpfs needs root and util-linux's unshare"
)


def _cli(*args: object, preexec=None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (result,) = _clis([args], preexec=preexec, env=env)
    return result


def _clis(runs, preexec=None, env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Runs of the command line as processes of their own, started together (each one's arguments in ``runs``)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "longformer_action", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
        for args in runs
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _in_small_tmpfs(mount: Path, size: str, script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh, ``$1`` is the mount point) with a tmpfs of ``size`` at ``mount``, in a mount
    namespace of its own: the tmpfs disappears with the process, whatever happens."""
    mount.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs -o size={size} tmpfs "$1" && {script}', "sh", mount, *map(str, args)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


# --- a full disk, for real ------------------------------------------------------------------------


#: The command, with the free-space check before the save passed as if another writer filled the disk
#: after it (that check refuses a disk that is already too small; see tests/test_staging.py).
_FILLED_AFTER_THE_CHECK = (
    "import sys; from longformer_action.writing import staging; "
    "staging.StagedOutput.ensure_space = lambda self, parts, **kw: 0; "
    "from longformer_action.cli import main; sys.argv[0] = 'longformer-convert'; main()"
)


@needs_namespaces
def test_a_full_disk_while_the_weights_are_written(cli, checkpoints, base_model, tmp_path):
    mount = tmp_path / "small"
    script = (
        f'"{sys.executable}" -c "{_FILLED_AFTER_THE_CHECK}" convert --checkpoint "$2" --output "$1/model" '
        '--base-model "$3"; echo "exit=$?"; echo "left:$(ls -A "$1")"'
    )
    result = _in_small_tmpfs(mount, "100k", script, checkpoints["plain"], base_model)
    line = _error_line(result.stderr)
    assert "no space left on the device while writing " in line and "/model.safetensors; it needs " in line
    assert " free there, ENOSPC)" in line
    assert line.endswith("Free space on that disk, or pass another --output on a disk with room.")
    assert "exit=1" in result.stdout and "left:\n" in result.stdout + "\n", "nothing at --output, no staging folder"
    assert "save: failed" in result.stderr
    # the fix: another --output, on a disk with room
    fixed = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "model", "--base-model",
                base_model)  # fmt: skip
    assert fixed.exit_code == 0, fixed.stderr
    assert f"it needs {human_bytes((tmp_path / 'model' / 'model.safetensors').stat().st_size)} (" in line


@needs_namespaces
def test_a_full_disk_under_report(cli, checkpoints, base_model, tmp_path):
    mount = tmp_path / "full"
    out = tmp_path / "model"
    script = (
        'dd if=/dev/zero of="$1/filler" bs=4k count=64 2>/dev/null; '
        f'"{sys.executable}" -m longformer_action convert --checkpoint "$2" --output "$3" --base-model "$4" '
        '--report "$1/report.json"; echo "exit=$?"; echo "left:$(ls -A "$1")"'
    )
    result = _in_small_tmpfs(mount, "64k", script, checkpoints["plain"], out, base_model)
    line = _error_line(result.stderr)
    assert f"no space left on the device while writing {mount}/report.json" in line
    assert line.endswith("Free space on that disk, or pass another --report on a disk with room.")
    assert "exit=1" in result.stdout and "left:filler\n" in result.stdout, "no half-written report or temporary file"
    assert not out.exists(), "a report that cannot be written stops the folder from appearing"
    fixed = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model,
                "--report", tmp_path / "report.json")  # fmt: skip
    assert fixed.exit_code == 0, fixed.stderr
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "ok"


def test_a_file_size_limit_names_max_shard_size(checkpoints, base_model, tmp_path):
    """RLIMIT_FSIZE (ulimit -f) makes a write past it fail with EFBIG, as a file system's own limit does."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out, fixed_out = tmp_path / "model", tmp_path / "fixed"
    args = ("convert", "--checkpoint", checkpoints["plain"], "--base-model", base_model)
    # the run that fails and the fix, side by side under the same limit
    result, fixed = _clis([(*args, "--output", out), (*args, "--output", fixed_out, "--max-shard-size", "40kB")],
                          preexec=limit)  # fmt: skip
    assert result.returncode == 1
    line = _error_line(result.stderr)
    assert "model.safetensors is larger than the file system (or the process's file size limit, ulimit -f)" in line
    assert "(EFBIG)" in line and "Pass a smaller --max-shard-size (e.g. --max-shard-size 1GB)" in line
    assert not out.exists()
    assert fixed.returncode == 0, fixed.stderr
    assert (fixed_out / "model.safetensors.index.json").is_file()


# --- an OSError at every write ---------------------------------------------------------------------


def _inject(monkeypatch, name: str, code: int) -> None:
    real = builtins.open

    def failing(file, mode="r", *args, **kwargs):
        writes = isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax")
        if writes and Path(os.fsdecode(file)).name in (name, f".{name}.tmp"):
            raise OSError(code, os.strerror(code), os.fsdecode(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing)
    monkeypatch.setattr(io, "open", failing)
    if name == "tokenizer.json":
        _inject_rust_save(monkeypatch, code)


class _FailingRustTokenizer:
    """The Rust tokenizer, whose ``save`` fails as the tokenizers library fails: a plain ``Exception``
    worded ``... (os error N)`` (Python's ``open`` is not on that path)."""

    def __init__(self, inner, code: int) -> None:
        self._inner, self._code = inner, code

    def save(self, path, *args, **kwargs):
        raise Exception(f"{os.strerror(self._code)} (os error {self._code})")

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _inject_rust_save(monkeypatch, code: int) -> None:
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    real = TokenizersBackend.backend_tokenizer
    monkeypatch.setattr(
        TokenizersBackend, "backend_tokenizer", property(lambda self: _FailingRustTokenizer(real.fget(self), code))
    )


@pytest.mark.parametrize(
    ("name", "code", "fragment", "fix"),
    [
        ("config.json", errno.EIO, "input/output error while writing", "Check that device or mount"),
        ("model.safetensors", errno.EDQUOT, "disk quota exceeded while writing", "Free space within your quota"),
        ("tokenizer.json", errno.EROFS, "is on a read-only file system (EROFS)", "Pass another --output on a writable"),
        ("README.md", errno.ENOSPC, "no space left on the device while writing", "Free space on that disk"),
        ("conversion-report.json", errno.EACCES, "permission denied writing", "Make "),
        ("SHA256SUMS", errno.EFBIG, "is larger than the file system", "Pass another --output on a file system"),
        ("custom_head.safetensors", errno.ENOSPC, "no space left on the device while writing", "Free space"),
    ],
)
def test_every_write_of_the_folder(cli, checkpoints, base_model, tmp_path, monkeypatch, name, code, fragment, fix):
    _inject(monkeypatch, name, code)
    out = tmp_path / "model"
    task = ["--task", "feature-extraction"] if name == "custom_head.safetensors" else []
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model, *task)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert fragment in line and f"/{name}" in line and fix in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing at --output, no staging folder"


def test_a_tokenizer_file_that_cannot_be_read_is_named_as_the_source(
    cli, checkpoints, base_model, tmp_path, monkeypatch
):
    real = builtins.open
    source = str(base_model / "tokenizer.json")

    def failing(file, mode="r", *args, **kwargs):
        if os.fspath(file) == source and "r" in mode:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), source)
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing)
    monkeypatch.setattr(io, "open", failing)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model)
    line = one_error_line(result)
    assert f"cannot read tokenizer file {source}: permission denied" in line, line
    assert f"Make it readable (chmod a+r {source})" in line
    assert not out.exists()


# --- paths that cannot be read -----------------------------------------------------------------------


def test_a_dangling_link(cli, checkpoints, base_model, tmp_path):
    link = tmp_path / "best.ckpt"
    link.symlink_to(tmp_path / "runs" / "best.ckpt")
    result = cli("convert", "--checkpoint", link, "--output", tmp_path / "m", "--base-model", base_model)
    line = one_error_line(result)
    assert f"is a symbolic link to {tmp_path / 'runs' / 'best.ckpt'}, which does not exist" in line
    assert "copy" not in line
    (tmp_path / "runs").mkdir()
    shutil.copy(checkpoints["plain"], tmp_path / "runs" / "best.ckpt")  # the fix: point the link at the checkpoint
    assert cli("convert", "--checkpoint", link, "--output", tmp_path / "m", "--base-model", base_model).exit_code == 0


def test_a_git_lfs_pointer(cli, tmp_path):
    pointer = tmp_path / "best.ckpt"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1785412\n")
    line = one_error_line(cli("inspect", "--checkpoint", pointer))
    assert "is a Git LFS pointer (" in line and "actions/checkout with `lfs: true`" in line


def test_a_name_in_another_unicode_normalization(cli, checkpoints, tmp_path):
    on_disk = tmp_path / unicodedata.normalize("NFD", "modèle.ckpt")
    shutil.copy(checkpoints["plain"], on_disk)
    typed = tmp_path / unicodedata.normalize("NFC", "modèle.ckpt")
    line = one_error_line(cli("inspect", "--checkpoint", typed))
    assert "differs from that name ('mod\\xe8le.ckpt') only in its Unicode normalization" in line
    assert cli("inspect", "--checkpoint", on_disk).exit_code == 0


def test_a_name_that_is_not_utf8(cli, checkpoints, base_model, tmp_path):
    folder = os.fsencode(tmp_path)
    bad = folder + b"/mod\xe8le.ckpt"
    shutil.copy(checkpoints["plain"], bad)
    result = cli("convert", "--checkpoint", os.fsdecode(bad), "--output", tmp_path / "m", "--base-model", base_model)
    line = one_error_line(result)
    assert "mod\\xe8le.ckpt is not valid UTF-8" in line and "Rename it to a UTF-8 name" in line
    assert "corrupt" not in line and "copy" not in line
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", os.fsdecode(folder + b"/out\xe8"),
                 "--base-model", base_model)  # fmt: skip
    assert "--output " in one_error_line(result) and "is not valid UTF-8" in result.stderr
    assert sorted(os.listdir(folder)) == [b"mod\xe8le.ckpt"]
    os.rename(bad, folder + b"/model.ckpt")  # the fix
    fixed = cli("convert", "--checkpoint", tmp_path / "model.ckpt", "--output", tmp_path / "m", "--base-model",
                base_model)  # fmt: skip
    assert fixed.exit_code == 0, fixed.stderr


@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None, reason="dropping the override needs root and setpriv")
@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_checkpoint_the_user_cannot_read(checkpoints, tmp_path, where):
    """A real unprivileged read: root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from the
    bounding set, so not regained at exec) meets file permissions as any user does."""
    ckpt, fixed_ckpt = (_unreadable(checkpoints["plain"], tmp_path / name, where) for name in ("runs", "fixed"))
    if where == "file":
        fixed_ckpt.chmod(0o644)  # the fix
    else:
        fixed_ckpt.parent.chmod(0o711)  # the fix
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    # the failing run and the fixed one, side by side
    processes = [
        subprocess.Popen(
            [*drop, sys.executable, "-m", "longformer_action", "inspect", "--checkpoint", str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for path in (ckpt, fixed_ckpt)
    ]  # fmt: skip
    (_, stderr), (_, fixed_stderr) = (process.communicate(timeout=600) for process in processes)
    assert processes[0].returncode == 1
    line = _error_line(stderr)
    if where == "file":
        assert f"cannot read checkpoint {ckpt}: permission denied (owner uid 1234, mode 0600" in line
        assert f"Make it readable (chmod a+r {ckpt}), or run as its owner" in line
    else:
        assert f"cannot reach checkpoint {ckpt}: a folder on its path cannot be entered by uid 0" in line
        assert "Give uid 0 search (x) permission on the folders above it" in line
    assert "copy it again" not in line
    assert processes[1].returncode == 0, fixed_stderr


def _unreadable(checkpoint: Path, folder: Path, where: str) -> Path:
    """A copy of ``checkpoint`` in ``folder``, both owned by uid 1234; the file (``where="file"``) or the folder
    closed to others."""
    folder.mkdir()
    ckpt = folder / "best.ckpt"
    shutil.copy(checkpoint, ckpt)
    os.chown(ckpt, 1234, 1234)
    os.chown(folder, 1234, 1234)
    (ckpt if where == "file" else folder).chmod(0o600 if where == "file" else 0o700)
    return ckpt


def test_a_read_error_of_the_device_is_not_called_damage(cli, checkpoints, monkeypatch):
    """EIO while torch reads the checkpoint: the disk failed, the file may be whole; copying it is not the fix."""
    import torch

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(torch, "load", failing)
    line = one_error_line(cli("inspect", "--checkpoint", checkpoints["plain"]))
    assert "input/output error while reading checkpoint" in line and "(EIO)" in line
    assert "Check that device or mount" in line and "copy" not in line and "corrupt" not in line
