"""What may go to the Hub, and what its commit says: a checked folder whose files are the ones its report records.

``verify_folder`` reads the folder only, so a folder that may not be pushed is refused before any request.
``commit_message`` writes the provenance the commit (and the pull request) carries.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..digests import file_sha256
from ..errors import PushError
from ..progress import human_bytes
from ..registry import tasks
from ..registry.files import CHECKSUMS_NAME, REPORT_NAME
from ..text import listing
from .recorded_files import changed_files, recorded_digests

#: The Hub's limit on a pull request's title, which is the commit's title (``HfApi.create_discussion``: 200).
TITLE_LIMIT = 200

_DIGEST_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


@dataclass(frozen=True)
class FolderFile:
    """One file of a checked folder: its POSIX path in the folder, its SHA-256 (hex) and size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class CheckedFolder:
    """A folder ``verify_folder`` accepted: every file (``SHA256SUMS`` included) and the report it holds."""

    folder: Path
    files: tuple[FolderFile, ...]
    report: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class CommitMessage:
    """The commit's title (the pull request's title) and description (its first comment), in Markdown."""

    title: str
    description: str


# --- the folder ----------------------------------------------------------------------------------------------------


def _refuse(folder: Path, what: str, fix: str) -> PushError:
    return PushError(f"{folder} is not pushed: {what}", fix)


_CONVERT_AGAIN = "convert again (longformer-convert convert ... --output DIR) and push the new folder"


def verify_folder(folder: Path) -> CheckedFolder:
    """Accept a folder for the Hub only when its check passed and ``SHA256SUMS`` proves every file.

    Reads the folder only (no request). The rules: ``conversion-report.json`` parses and says ``status`` ok with a
    check that passed (a folder converted with ``--no-check`` is refused: ``verify`` checks a folder but does not
    change it, so the fix is to convert again with the check); every ``SHA256SUMS`` line (``sha256sum`` format) names
    a regular file inside the folder whose SHA-256 is the one listed; no file of the folder but ``SHA256SUMS`` is
    left out; the report is among the listed files; and every other file is one the report records, with the SHA-256
    it records (``recorded_files.changed_files``, ``verify``'s rule: ``SHA256SUMS`` written again after an edit does
    not hide it).

    Args:
        folder: the ``--output`` folder of a ``convert`` run.

    Returns:
        The folder's files (``SHA256SUMS`` included) with their digests and sizes, and the report.

    Raises:
        PushError: the first rule broken, with the fix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "it does not exist" if not folder.exists() else "it is not a folder"
        raise _refuse(folder, what, "pass the --output folder of a longformer-convert convert run")
    report_path, sums_path = folder / REPORT_NAME, folder / CHECKSUMS_NAME
    if not report_path.is_file():
        raise _refuse(folder, f"it holds no {REPORT_NAME}, so nothing says it was checked", _CONVERT_AGAIN)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _refuse(folder, f"its {REPORT_NAME} cannot be read ({type(exc).__name__})", _CONVERT_AGAIN) from None
    if not isinstance(report, dict):
        raise _refuse(folder, f"its {REPORT_NAME} is not a report", _CONVERT_AGAIN)
    _require_passed_check(folder, report)
    if not sums_path.is_file():
        raise _refuse(folder, f"it holds no {CHECKSUMS_NAME}", _CONVERT_AGAIN)
    listed = _read_sums(folder, sums_path)
    if REPORT_NAME not in listed:
        raise _refuse(folder, f"{CHECKSUMS_NAME} does not list {REPORT_NAME}", _CONVERT_AGAIN)
    present = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if not p.is_dir()}
    unlisted = sorted(set(present) - set(listed) - {CHECKSUMS_NAME})
    if unlisted:
        raise _refuse(
            folder,
            f"{len(unlisted)} file(s) not listed in {CHECKSUMS_NAME}: {listing(unlisted, 5)}",
            "remove them (the folder on the Hub is exactly the checked folder), or " + _CONVERT_AGAIN,
        )
    files = []
    for name, digest in sorted(listed.items()):
        path = folder / name
        if name not in present or path.is_symlink() or not path.is_file():
            what = "is missing" if name not in present else "is not a regular file"
            raise _refuse(folder, f"{name}, listed in {CHECKSUMS_NAME}, {what}", _CONVERT_AGAIN)
        actual = file_sha256(path)
        if actual != digest:
            raise _refuse(
                folder,
                f"{name} changed since the conversion (SHA-256 {actual[:12]}..., {CHECKSUMS_NAME} lists "
                f"{digest[:12]}...)",
                "a folder is pushed only as it was checked: " + _CONVERT_AGAIN,
            )
        files.append(FolderFile(name, digest, path.stat().st_size))
    _require_recorded(folder, report, listed)
    files.append(FolderFile(CHECKSUMS_NAME, file_sha256(sums_path), sums_path.stat().st_size))
    return CheckedFolder(folder, tuple(sorted(files, key=lambda f: f.path)), report)


def _require_passed_check(folder: Path, report: Mapping[str, Any]) -> None:
    check = report.get("check")
    if report.get("status") != "ok" or (isinstance(check, Mapping) and check.get("passed") is not True):
        detail = ""
        if isinstance(check, Mapping) and check.get("max_abs_diff") is not None:
            detail = f" (max abs diff {check['max_abs_diff']:.3g}, tolerance {check.get('atol', 'n/a')})"
        raise _refuse(
            folder,
            f"its report says the conversion or its check failed{detail}",
            "a folder whose check failed is never pushed: fix what the report's failures name and " + _CONVERT_AGAIN,
        )
    if not isinstance(check, Mapping):
        raise _refuse(
            folder,
            "it was converted with --no-check: its report records no passed check",
            "convert again without --no-check, so that the check's result is in the folder's report "
            "(longformer-convert verify checks a folder against its checkpoint but does not change the folder)",
        )


def _require_recorded(folder: Path, report: Mapping[str, Any], listed: Mapping[str, str]) -> None:
    # SHA256SUMS can be written again after an edit; the report records each file as the conversion wrote it
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        config = {}
    task = tasks.by_architecture(str(report.get("architecture") or ""))
    changed = changed_files(folder, report, config if isinstance(config, dict) else {}, task)
    unrecorded = sorted(set(listed) - set(recorded_digests(report)) - {REPORT_NAME})
    if changed or unrecorded:
        what = [line for _, line in changed]
        what += [f"{name} is not among the files {REPORT_NAME} records" for name in unrecorded]
        raise _refuse(
            folder,
            f"{listing(what, 3, sep='; ', more='; and {} more')} ({CHECKSUMS_NAME} was written again after the "
            "conversion)",
            f"a folder is pushed only as it was checked: {_CONVERT_AGAIN}, or run longformer-convert verify --model "
            f"{folder} --checkpoint CKPT to see what changed",
        )


def _read_sums(folder: Path, sums_path: Path) -> dict[str, str]:
    try:
        lines = sums_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(folder, f"{CHECKSUMS_NAME} cannot be read ({type(exc).__name__})", _CONVERT_AGAIN) from None
    listed: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        match = _DIGEST_LINE.fullmatch(line)
        name = match["name"] if match else ""
        parts = name.split("/")
        if not match or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or name in listed:
            raise _refuse(
                folder,
                f"line {number} of {CHECKSUMS_NAME} is not a '<sha256>  <file in the folder>' line",
                _CONVERT_AGAIN,
            )
        listed[name] = match["digest"].lower()
    return listed


# --- the commit message --------------------------------------------------------------------------------------------


def workflow_run_url(environ: Mapping[str, str]) -> str | None:
    """The GitHub Actions run's page (``GITHUB_SERVER_URL/GITHUB_REPOSITORY/actions/runs/GITHUB_RUN_ID``), else None."""
    parts = [environ.get(name, "").strip() for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if environ.get("GITHUB_ACTIONS") != "true" or not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"


def commit_message(
    checked: CheckedFolder,
    *,
    title: str | None = None,
    removed: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> CommitMessage:
    """The commit's title and description: where the files came from and how they were checked.

    The description names the source checkpoint (file name, never its path) and its SHA-256, the task and the
    class, the check's result (max abs diff, tolerance, each named check), the tool and its version, the files, the
    files the commit removes, and in GitHub Actions (``GITHUB_ACTIONS=true``) the workflow run's URL and commit.

    Args:
        checked: the folder, from ``verify_folder``.
        title: replaces the generated title (``--commit-message``); the description stays.
        removed: paths the commit deletes from the revision.
        environ: the environment to read GitHub's variables from (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    report = checked.report
    source, check, tool = report.get("source") or {}, report.get("check") or {}, report.get("tool") or {}
    name = Path(str(source.get("path") or "the checkpoint")).name
    architecture, task = report.get("architecture") or "the model", report.get("task") or "unknown"
    version = f"longformer-convert {tool.get('version') or ''}".strip()
    if title is None:
        title = f"Upload {architecture} converted from {name} (check passed)"
        if len(title) > TITLE_LIMIT:
            keep = TITLE_LIMIT - len(title) + len(name) - 3
            title = title.replace(name, name[: max(keep, 8)] + "...")
    named = "; ".join(
        f"{c.get('name')}: {'not run' if c.get('passed') is None else 'passed' if c.get('passed') else 'FAILED'}"
        for c in check.get("checks") or []
    )
    lines = [
        f"Converted from a PyTorch Lightning checkpoint and checked by {version}.",
        "",
        f"- source checkpoint: `{name}`",
        f"- source SHA-256: `{source.get('sha256') or 'n/a'}`",
        f"- task: `{task}` (`{architecture}`)",
        f"- check: passed; max abs diff {_number(check.get('max_abs_diff'))} (tolerance {_number(check.get('atol'))},"
        f" {check.get('dtype') or 'n/a'}); {check.get('tensors_compared', 'n/a')} tensors equal to the checkpoint's"
        + (f"; {named}" if named else ""),
        f"- tool: {version}",
        f"- files: {len(checked.files)} ({human_bytes(checked.total_bytes)}); `{CHECKSUMS_NAME}` lists each one's "
        "SHA-256",
    ]
    removed = sorted(removed)
    if removed:
        lines.append(f"- removed (not in the converted folder): {', '.join(f'`{p}`' for p in removed)}")
    run = workflow_run_url(environ)
    if run:
        commit = environ.get("GITHUB_SHA", "").strip()
        lines.append(f"- workflow run: {run}" + (f" (commit `{commit}`)" if commit else ""))
    return CommitMessage(title, "\n".join(lines) + "\n")


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"
