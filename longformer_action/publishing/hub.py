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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..progress import Progress, human_bytes
from .checked import (
    CHECKSUMS_NAME,
    REPORT_NAME,
    TITLE_LIMIT,
    CheckedFolder,
    CommitMessage,
    FolderFile,
    PushError,
    commit_message,
    verify_folder,
    workflow_run_url,
)
from .hub_answers import (
    MAX_RETRY_AFTER,
    NAME_RULE,
    RETRY_DELAYS,
    first_line,
    refusal,
    reset_connections,
    retry_after,
    status_of,
    token_scope,
    transient,
)

__all__ = [
    "CHECKSUMS_NAME",
    "REPORT_NAME",
    "TITLE_LIMIT",
    "CheckedFolder",
    "CommitMessage",
    "FolderFile",
    "PushError",
    "PushResult",
    "commit_message",
    "push_folder",
    "verify_folder",
    "workflow_run_url",
]

#: The Hub's own file in every repository: never compared, never deleted.
GITATTRIBUTES = ".gitattributes"

T = TypeVar("T")


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
            f"set HF_TOKEN to {token_scope(owner)}",
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


def _owner(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"repository {repo_id!r} is not OWNER/NAME", f"pass --repo-id {NAME_RULE}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = str(exc).split(":")[0]
        raise PushError(f"repository name {repo_id!r} is refused by huggingface_hub ({reason})", NAME_RULE) from None
    return repo_id.split("/")[0]


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
            if status_of(exc) != 404:
                raise self.failure(exc, "reading the repository") from None
        else:
            if self.private and not info.private:
                self.progress.warning(
                    self.redact(f"{self.repo_id} exists and is public: --private applies to a new repository only")
                )
            return False
        tries: list[int] = []

        def create() -> Any:
            # a 409 on the first try: the repository exists where HF_TOKEN cannot see it; on a retry, the try before
            # may have created it (its answer lost)
            tries.append(1)
            return self.api.create_repo(self.repo_id, private=self.private, exist_ok=len(tries) > 1)

        try:
            self.retrying("creating the repository", create)
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
            if status_of(exc.__cause__) == 400:  # huggingface_hub's validate-yaml refused the card's metadata
                raise self.error(
                    f"the Hub refused the model card's metadata (README.md): {first_line(exc, skip=1)}",
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
                cause = transient(exc)
                if cause is None or attempt == len(RETRY_DELAYS):
                    raise
                delay = max(RETRY_DELAYS[attempt], retry_after(exc) or 0.0)
                if delay > MAX_RETRY_AFTER:
                    raise
                self.say(
                    f"{cause} to {what}; retrying in {delay:g} s (attempt {attempt + 2} of {len(RETRY_DELAYS) + 1})"
                )
                reset_connections(exc)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def failure(self, exc: BaseException, doing: str) -> PushError:
        """One ``PushError`` for a failed request; an exception that is no answer of the Hub is raised again."""
        told = refusal(
            exc,
            doing,
            repo_id=self.repo_id,
            revision=self.revision,
            create_pr=self.create_pr,
            endpoint=self.api.endpoint,
            whoami=self.whoami,
        )
        if told is None:
            raise exc
        return self.error(*told)

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


def _git_blob_id(path: Path) -> str:
    # the id git (and the Hub, for a file not stored with LFS) gives a file: sha1 of "blob <size>\0" + bytes
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
