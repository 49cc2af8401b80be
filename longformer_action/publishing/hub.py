"""Push a checked folder to the Hugging Face Hub, as a pull request by default, with its provenance in the commit.

Only a folder whose ``conversion-report.json`` says the check passed and whose ``SHA256SUMS`` verifies is pushed
(``verify_folder``, before any request). The push goes through huggingface_hub's own API: ``repo_info`` and
``create_repo`` for the repository, ``list_repo_refs``, ``list_repo_tree``, ``get_repo_discussions`` and
``get_discussion_details`` to find the folder where it may already be, and one ``create_commit`` (with
``create_pr``) that uploads it. One commit, not ``upload_folder``: with Xet on, ``upload_folder`` may split a large
folder into several commits, and a pull request must hold the folder whole.

The revision (or pull request) the push makes holds exactly the folder's files: files of an earlier upload that the
folder does not hold (an old shard, a ``tokenizer.json`` that would shadow the new vocabulary files) are deleted in
the same commit, and the log and the commit description name them; ``.gitattributes`` is the Hub's and stays.

Pushing the same folder again makes no commit: its files are compared (sha256 for LFS files, the git blob id for
regular ones) with the target revision and, for a pull request, with every open pull request's ``refs/pr/N``.

Transient failures (connection errors, timeouts, 408, 429, 5xx) of the calls huggingface_hub does not retry itself
(``repo_info``, ``create_repo``, ``list_repo_refs``, the discussions, the commit) are retried here with backoff; the
preupload, the LFS transfers and the tree listings are retried by huggingface_hub. Before the commit is retried, the
comparison runs again: a commit whose answer was lost may have been made, and a second pull request must not open.

The token is the caller's (``HF_TOKEN``); no message, log line or exception this module makes contains it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConversionError
from ..progress import Progress, human_bytes

#: The folder's report and checksum file, as the conversion writes them.
REPORT_NAME = "conversion-report.json"
CHECKSUMS_NAME = "SHA256SUMS"
#: The Hub's own file in every repository: never compared, never deleted.
GITATTRIBUTES = ".gitattributes"

#: Statuses worth another try: huggingface_hub's own ``http_backoff`` retries these.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Seconds to wait before each retry (three retries after the first try).
RETRY_DELAYS = (2.0, 4.0, 8.0)
#: The longest ``Retry-After`` honoured; a Hub that asks for more is told to the user instead.
MAX_RETRY_AFTER = 60.0
#: The Hub's limit on a pull request's title, which is the commit's title (``HfApi.create_discussion``: 200).
TITLE_LIMIT = 200

_DIGEST_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")

T = TypeVar("T")


class PushError(ConversionError):
    """The folder cannot be pushed: not checked, changed since, or the Hub refused it (with the fix)."""

    stage = "push"


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


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
        repo_id: ``OWNER/NAME``.
        revision: the branch the commit or the pull request targets (or the ``refs/pr/N`` pushed onto).
        repo_url: the repository's page.
        repo_created: the push created the repository.
        new_commit: the push made a commit. ``False`` when the files were already there (``already``): then
            ``commit_oid`` is the commit that holds them.
        commit_oid: the commit (40 hex) that holds the folder's files.
        commit_url: its page.
        pr_num: the pull request that holds them (new, or already open), else ``None``.
        pr_url: its page, else ``None``.
        already: ``None`` after a new commit; else where the files already were, for people ("already on main at
            <oid>", "already proposed in pull request #2 <url>").
        files: the number of files pushed (or found), and ``size`` their total size in bytes.
        removed: files of the revision the commit deleted because the folder does not hold them.
        title: the commit's title.
    """

    repo_id: str
    revision: str
    repo_url: str
    repo_created: bool
    new_commit: bool
    commit_oid: str
    commit_url: str
    pr_num: int | None
    pr_url: str | None
    already: str | None
    files: int
    size: int
    removed: tuple[str, ...]
    title: str


# --- the folder ----------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _git_blob_id(path: Path) -> str:
    # the id git (and the Hub, for a file not stored with LFS) gives a file: sha1 of "blob <size>\0" + bytes
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse(folder: Path, what: str, fix: str) -> PushError:
    return PushError(f"{folder} is not pushed: {what}", fix)


_CONVERT_AGAIN = "convert again (longformer-convert convert ... --output DIR) and push the new folder"


def verify_folder(folder: Path) -> CheckedFolder:
    """Accept a folder for the Hub only when its check passed and ``SHA256SUMS`` proves every file.

    Reads the folder only (no request). The rules: ``conversion-report.json`` parses and says ``status`` ok with a
    check that passed (a folder converted with ``--no-check`` is refused: ``verify`` checks a folder but does not
    change it, so the fix is to convert again with the check); every ``SHA256SUMS`` line (``sha256sum`` format) names
    a regular file inside the folder whose SHA-256 is the one listed; no file of the folder but ``SHA256SUMS`` is
    left out; the report is among the listed files.

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
        shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
        raise _refuse(
            folder,
            f"{len(unlisted)} file(s) not listed in {CHECKSUMS_NAME}: {shown}",
            "remove them (the folder on the Hub is exactly the checked folder), or " + _CONVERT_AGAIN,
        )
    files = []
    for name, digest in sorted(listed.items()):
        path = folder / name
        if name not in present or path.is_symlink() or not path.is_file():
            what = "is missing" if name not in present else "is not a regular file"
            raise _refuse(folder, f"{name}, listed in {CHECKSUMS_NAME}, {what}", _CONVERT_AGAIN)
        actual = _sha256(path)
        if actual != digest:
            raise _refuse(
                folder,
                f"{name} changed since the conversion (SHA-256 {actual[:12]}..., {CHECKSUMS_NAME} lists "
                f"{digest[:12]}...)",
                "a folder is pushed only as it was checked: " + _CONVERT_AGAIN,
            )
        files.append(FolderFile(name, digest, path.stat().st_size))
    files.append(FolderFile(CHECKSUMS_NAME, _sha256(sums_path), sums_path.stat().st_size))
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


# --- the push ------------------------------------------------------------------------------------------------------


def push_folder(
    folder: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    create_pr: bool = True,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None,
    endpoint: str | None = None,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Push a checked folder to ``repo_id``: a pull request by default, no commit when the files are there already.

    Args:
        folder: the ``--output`` folder of a ``convert`` run (see ``verify_folder``).
        repo_id: ``OWNER/NAME`` (OWNER: a user or an organisation). Created when missing.
        revision: the branch to commit to, or the pull request's base (default ``main``); with
            ``create_pr=False`` also an open pull request's ``refs/pr/N``.
        create_pr: open a pull request (the default) rather than commit to ``revision``.
        private: create a missing repository private (an existing one keeps its visibility; the log says so).
        commit_message: the commit's title instead of the generated one (the description keeps the provenance).
        token: a token with write access to OWNER (``HF_TOKEN``); never printed.
        endpoint: the Hub (default: huggingface_hub's, ``HF_ENDPOINT`` or https://huggingface.co).
        progress: where the log lines go (stderr).
        sleep: waits between retries (tests pass a recorder).

    Returns:
        What the push did (``PushResult``).

    Raises:
        PushError: the folder is not checked or changed (before any request); no token; a repository name the
            Hub refuses; a token without write access to OWNER (401/403); a missing branch; a failure that
            persisted through the retries. Each names the fix.
    """
    checked = verify_folder(folder)
    owner = _owner(repo_id)
    if not token:
        raise PushError(
            f"no Hugging Face token: HF_TOKEN is not set, and pushing to {repo_id} needs one",
            f"set HF_TOKEN to {_token_scope(owner)}",
        )
    if create_pr and revision is not None and revision.startswith("refs/"):
        raise PushError(
            f"a pull request is opened against a branch, not {revision}",
            "pass a branch as --revision, or --no-create-pr to push onto that pull request",
        )
    if commit_message is not None and (not commit_message.strip() or "\n" in commit_message.strip()):
        raise PushError("--commit-message must be one line of text", "pass the title; the description is generated")
    if commit_message is not None and create_pr and len(commit_message.strip()) > TITLE_LIMIT:
        raise PushError(
            f"--commit-message has {len(commit_message.strip())} characters; a pull request's title has at most "
            f"{TITLE_LIMIT}",
            "shorten it",
        )
    return _Push(
        checked,
        repo_id,
        revision=revision or "main",
        create_pr=create_pr,
        private=private,
        title=commit_message.strip() if commit_message else None,
        token=token,
        endpoint=endpoint,
        progress=progress,
        sleep=sleep,
    ).run()


_NAME_RULE = (
    "OWNER/NAME, OWNER your Hub user name or an organisation's; NAME of letters, digits, '-', '_' and '.', at most "
    "96 characters, not starting or ending with '-' or '.', without '--' or '..', not ending in '.git'"
)


def _owner(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"repository {repo_id!r} is not OWNER/NAME", f"pass --repo-id {_NAME_RULE}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = str(exc).split(":")[0]
        raise PushError(f"repository name {repo_id!r} is refused by huggingface_hub ({reason})", _NAME_RULE) from None
    return repo_id.split("/")[0]


def _token_scope(owner: str) -> str:
    return (
        f"a token with write access to {owner}: a fine-grained token with write access to {owner}'s repositories, "
        "or a classic write token"
    )


@dataclass(frozen=True)
class _Found:
    oid: str
    pr_num: int | None = None
    pr_url: str | None = None


class _Push:
    """One push: the checked folder, the Hub client, and the log."""

    def __init__(
        self,
        checked: CheckedFolder,
        repo_id: str,
        *,
        revision: str,
        create_pr: bool,
        private: bool,
        title: str | None,
        token: str,
        endpoint: str | None,
        progress: Progress,
        sleep: Callable[[float], None],
    ) -> None:
        from huggingface_hub import HfApi

        from .. import errors

        self.checked, self.repo_id, self.owner = checked, repo_id, repo_id.split("/")[0]
        self.revision, self.create_pr, self.private, self.title = revision, create_pr, private, title
        self.token, self.progress, self.sleep = token, progress, sleep
        version = _version()
        self.api = HfApi(endpoint=endpoint, token=token, library_name=errors.PACKAGE, library_version=version)
        self.blob_ids: dict[str, str] = {}

    # -- the log and the errors, without the token ------------------------------------------------------------

    def say(self, text: str) -> None:
        self.progress.line(self.redact(f"push: {text}"))

    def redact(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def error(self, message: str, hint: str) -> PushError:
        return PushError(self.redact(message), self.redact(hint))

    # -- the steps --------------------------------------------------------------------------------------------

    def run(self) -> PushResult:
        checked = self.checked
        self.say(
            f"{checked.folder.name}: {len(checked.files)} files, {human_bytes(checked.total_bytes)}; the check passed "
            f"and {CHECKSUMS_NAME} verifies"
        )
        created = self.ensure_repo()
        found, remote = self.look()
        if found is not None:
            return self.result(found, created=created, new_commit=False)
        removed = tuple(sorted(set(remote) - {f.path for f in checked.files} - {GITATTRIBUTES}))
        message = commit_message(checked, title=self.title, removed=removed)
        where = f"as a pull request against {self.revision}" if self.create_pr else f"to {self.revision}"
        self.say(f"uploading {len(checked.files)} files ({human_bytes(checked.total_bytes)}) to {self.repo_id} {where}")
        if removed:
            self.say(f"the commit removes {len(removed)} file(s) the folder does not hold: {', '.join(removed)}")
        doing = "opening the pull request" if self.create_pr else f"committing to {self.revision}"
        try:
            info = self.retrying("the commit", lambda: self.commit(message, removed), recheck=lambda: self.look()[0])
        except PushError:
            raise
        except Exception as exc:
            raise self.failure(exc, doing) from None
        if isinstance(info, _Found):  # a lost answer: the commit was made all the same
            self.say("the commit's answer was lost, but the Hub holds the files: the commit was made")
            return self.result(info, created=created, new_commit=True, title=message.title, removed=removed)
        if self.create_pr and info.pr_num is None:  # the revision got the files meanwhile: huggingface_hub skipped
            return self.result(_Found(info.oid), created=created, new_commit=False)
        done = _Found(info.oid, info.pr_num, info.pr_url)
        return self.result(done, created=created, new_commit=True, title=message.title, removed=removed)

    def ensure_repo(self) -> bool:
        try:
            info = self.retrying("the repository's info", lambda: self.api.repo_info(self.repo_id))
        except Exception as exc:
            if _status(exc) != 404:
                raise self.failure(exc, "reading the repository") from None
        else:
            if self.private and not info.private:
                self.progress.warning(
                    self.redact(f"{self.repo_id} exists and is public: --private applies to a new repository only")
                )
            return False
        try:
            self.retrying(
                "creating the repository",
                lambda: self.api.create_repo(self.repo_id, private=self.private, exist_ok=True),
            )
        except Exception as exc:
            raise self.failure(exc, "creating the repository") from None
        self.say(f"created {'private' if self.private else 'public'} repository {self.repo_id}")
        return True

    def look(self) -> tuple[_Found | None, dict[str, Any]]:
        """Where the folder's files already are: the revision, else (for a pull request) an open pull request."""
        try:
            refs = self.retrying(
                "the repository's refs",
                lambda: self.api.list_repo_refs(self.repo_id, include_pull_requests=True),
            )
            heads = {f"refs/heads/{r.name}": r.target_commit for r in refs.branches}
            heads.update({r.ref: r.target_commit for r in refs.pull_requests or []})
            ref = self.revision if self.revision.startswith("refs/") else f"refs/heads/{self.revision}"
            if ref not in heads:
                raise self.error(
                    f"{self.repo_id} has no branch {self.revision}",
                    f"create it on the Hub first, or leave --revision unset to push to main "
                    f"(branches: {', '.join(sorted(r.name for r in refs.branches)) or 'none'})",
                )
            remote = self.tree(heads[ref])
            if self.holds(remote):
                return _Found(heads[ref]), remote
            if not self.create_pr:
                return None, remote
            discussions = self.retrying(
                "the pull requests",
                lambda: list(
                    self.api.get_repo_discussions(
                        self.repo_id, discussion_type="pull_request", discussion_status="open"
                    )
                ),
            )
            for pr in discussions:
                oid = heads.get(f"refs/pr/{pr.num}")
                if oid is None or not self.holds(self.tree(oid)):
                    continue
                details = self.retrying(
                    f"pull request #{pr.num}", lambda pr=pr: self.api.get_discussion_details(self.repo_id, pr.num)
                )
                if details.target_branch in (ref, self.revision):
                    return _Found(oid, pr.num, pr.url), remote
            return None, remote
        except PushError:
            raise
        except Exception as exc:
            raise self.failure(exc, "reading the repository") from None

    def tree(self, oid: str) -> dict[str, Any]:
        entries = self.api.list_repo_tree(self.repo_id, recursive=True, revision=oid)
        return {e.path: e for e in entries if getattr(e, "blob_id", None) is not None and hasattr(e, "lfs")}

    def holds(self, remote: Mapping[str, Any]) -> bool:
        if set(remote) - {GITATTRIBUTES} != {f.path for f in self.checked.files}:
            return False
        for file in self.checked.files:
            entry = remote[file.path]
            if entry.lfs is not None:
                if entry.lfs.sha256 != file.sha256 or entry.size != file.size:
                    return False
            elif entry.blob_id != self.blob_id(file.path):
                return False
        return True

    def blob_id(self, path: str) -> str:
        if path not in self.blob_ids:
            self.blob_ids[path] = _git_blob_id(self.checked.folder / path)
        return self.blob_ids[path]

    def commit(self, message: CommitMessage, removed: tuple[str, ...]) -> Any:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        operations: list[Any] = []
        for file in self.checked.files:
            add = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=str(self.checked.folder / file.path))
            if add.upload_info.sha256.hex() != file.sha256:  # the bytes about to go are the bytes checked
                raise self.error(
                    f"{file.path} changed after it was verified, before the upload",
                    "push again once nothing writes to the folder",
                )
            operations.append(add)
        operations += [CommitOperationDelete(path_in_repo=path) for path in removed]
        try:
            return self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=message.title,
                commit_description=message.description,
                revision=self.revision,
                create_pr=self.create_pr,
            )
        except ValueError as exc:
            if _status(exc.__cause__) == 400:  # huggingface_hub's validate-yaml refused the card's metadata
                raise self.error(
                    f"the Hub refused the model card's metadata (README.md): {_first_line(exc, skip=1)}",
                    f"this is a bug in longformer-convert: report it at {_issues()} with this log",
                ) from None
            raise

    # -- retries and errors -----------------------------------------------------------------------------------

    def retrying(self, what: str, call: Callable[[], T], *, recheck: Callable[[], Any] | None = None) -> Any:
        """``call()``; after a transient failure, wait and try again (``recheck()`` first: a result ends it)."""
        for attempt in range(len(RETRY_DELAYS) + 1):
            if attempt and recheck is not None:
                found = recheck()
                if found is not None:
                    return found
            try:
                return call()
            except PushError:
                raise
            except Exception as exc:
                cause = _transient(exc)
                if cause is None or attempt == len(RETRY_DELAYS):
                    raise
                delay = max(RETRY_DELAYS[attempt], _retry_after(exc) or 0.0)
                if delay > MAX_RETRY_AFTER:
                    raise
                self.say(
                    f"{cause} to {what}; retrying in {delay:g} s (attempt {attempt + 2} of {len(RETRY_DELAYS) + 1})"
                )
                _reset_connections(exc)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def failure(self, exc: BaseException, doing: str) -> PushError:
        """One ``PushError`` for a failed request, by its HTTP status (not by the client's exception class)."""
        status, server = _status(exc), _server_message(exc)
        scope = _token_scope(self.owner)
        settings = f"{self.api.endpoint}/settings/tokens"
        if status is None:
            cause = _transient(exc)
            if cause is not None:
                return self.error(
                    f"could not reach the Hub at {self.api.endpoint} while {doing} ({cause}, "
                    f"{len(RETRY_DELAYS) + 1} tries)",
                    "check the network (HF_ENDPOINT, proxy settings) and push again: a folder already on the Hub "
                    "makes no new commit",
                )
            raise exc
        if status == 401:
            return self.error(
                f"the Hub refused HF_TOKEN while {doing} (401: {server or 'invalid or expired token'})",
                f"set HF_TOKEN to a valid token ({settings}): {scope}",
            )
        if status == 403:
            who = self.whoami()
            if who and who[1] == "read":
                what = f"HF_TOKEN is a read token of {who[0]}: it may not write to {self.repo_id}"
            elif who:
                what = f"HF_TOKEN's user {who[0]} may not write to {self.owner} ({doing}: {server or '403'})"
            else:
                what = f"the Hub refused {doing} (403: {server or 'forbidden'})"
            hint = f"set HF_TOKEN to {scope}"
            if doing == "creating the repository":
                hint = (
                    f"{self.owner} must exist and be your user name or an organisation you may create repositories "
                    f"in; {hint}"
                )
            elif not self.create_pr:
                hint += ", or push as a pull request (--create-pr)"
            return self.error(what, hint)
        if status == 404 and doing == "creating the repository":
            return self.error(
                f"the Hub has no namespace {self.owner} ({server or '404'})",
                f"OWNER must be your user name or an existing organisation: pass --repo-id {_NAME_RULE}",
            )
        if status == 404:
            return self.error(
                f"{self.repo_id} or its revision {self.revision} was not found while {doing} ({server or '404'})",
                f"check --repo-id and --revision, and that HF_TOKEN may read the repository: {scope}",
            )
        if status == 400 and doing == "creating the repository":
            return self.error(f"the Hub refused the repository name {self.repo_id!r} ({server})", _NAME_RULE)
        if status in TRANSIENT_STATUSES:
            return self.error(
                f"the Hub answered {status} while {doing}, {len(RETRY_DELAYS) + 1} times ({server or 'no message'})",
                "the Hub may be busy or down: push again later; a folder already on the Hub makes no new commit",
            )
        return self.error(
            f"the Hub answered {status} while {doing} ({server or 'no message'})",
            "read the Hub's message above; push again once it is fixed",
        )

    def whoami(self) -> tuple[str, str] | None:
        try:
            me = self.api.whoami()
        except Exception:
            return None
        role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
        return (str(me.get("name")), str(role)) if me.get("name") else None

    def result(
        self,
        found: _Found,
        *,
        created: bool,
        new_commit: bool,
        title: str = "",
        removed: tuple[str, ...] = (),
    ) -> PushResult:
        endpoint = self.api.endpoint.rstrip("/")
        commit_url = f"{endpoint}/{self.repo_id}/commit/{found.oid}"
        already = None
        if not new_commit:
            already = (
                f"already proposed in pull request #{found.pr_num} {found.pr_url}"
                if found.pr_num is not None
                else f"already on {self.revision} at {found.oid}"
            )
            self.say(f"no new commit: the folder's files are {already}")
        elif found.pr_num is not None:
            self.say(f"opened pull request #{found.pr_num}: {found.pr_url}")
        else:
            self.say(f"committed to {self.revision}: {commit_url}")
        return PushResult(
            repo_id=self.repo_id,
            revision=self.revision,
            repo_url=f"{endpoint}/{self.repo_id}",
            repo_created=created,
            new_commit=new_commit,
            commit_oid=found.oid,
            commit_url=commit_url,
            pr_num=found.pr_num,
            pr_url=found.pr_url,
            already=already,
            files=len(self.checked.files),
            size=self.checked.total_bytes,
            removed=removed,
            title=title,
        )


def _version() -> str | None:
    from importlib import metadata

    from .. import errors

    try:
        return metadata.version(errors.PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def _issues() -> str:
    from .. import errors

    return errors.issues_url()


def _status(exc: BaseException | None) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "server_message", None)
    text = message if isinstance(message, str) and message.strip() else ""
    return " ".join(text.split())[:300]


def _first_line(exc: BaseException, *, skip: int = 0) -> str:
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[skip:] or lines)[:300]


def _transport_errors() -> tuple[type[BaseException], ...]:
    # the transport errors huggingface_hub's http_backoff retries (its client is httpx2 since 2.x, httpx in 1.x)
    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx
    return (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _transient(exc: BaseException) -> str | None:
    status = _status(exc)
    if status is not None:
        return f"the Hub answered {status}" if status in TRANSIENT_STATUSES else None
    if isinstance(exc, _transport_errors()):
        return f"the connection failed ({type(exc).__name__})"
    return None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = str(headers.get("Retry-After", "")).strip()
    return float(value) if value.isdigit() else None


def _reset_connections(exc: BaseException) -> None:
    # as huggingface_hub does after a connection error: the next request builds a new client
    if type(exc).__name__ == "ConnectError":
        from huggingface_hub.utils import close_session

        close_session()
