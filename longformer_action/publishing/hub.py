"""Push a checked folder to the Hugging Face Hub, as a pull request by default, with its provenance in the commit.

Only a folder whose ``conversion-report.json`` says the check passed and whose ``SHA256SUMS`` verifies is pushed
(``checked.verify_folder``, before any request). The push goes through huggingface_hub's own API: ``repo_info`` and
``create_repo`` for the repository, the refs, trees and discussions to find the folder where it may already be
(``hub_remote``), and one ``create_commit`` (with ``create_pr``) that uploads it. One commit, not ``upload_folder``:
with Xet on, ``upload_folder`` may split a large folder into several commits, and a pull request must hold the
folder whole.

The revision (or pull request) the push makes holds exactly the folder's files: files of an earlier upload that the
folder does not hold (an old shard, a ``tokenizer.json`` that would shadow the new vocabulary files) are deleted in
the same commit, and the log and the commit description name them; ``.gitattributes`` is the Hub's and stays.

Pushing the same folder again makes no commit: its files are compared with the target revision and, for a pull
request, with every open pull request's ``refs/pr/N``. Transient failures are retried with backoff (``hub_client``);
before the commit is retried, the comparison runs again: a commit whose answer was lost may have been made, and a
second pull request must not open.

The token is the caller's (``HF_TOKEN``, or the token ``hf auth login`` stored: ``hub_client.push_token``); no message,
log line or exception this module makes contains it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PushError, issues_url
from ..progress import Progress, human_bytes
from ..registry.files import CHECKSUMS_NAME
from .checked import TITLE_LIMIT, CheckedFolder, CommitMessage, commit_message, verify_folder
from .hub_answers import NAME_RULE, one_line, public_repository, status_of, token_scope
from .hub_client import HubClient
from .hub_remote import GITATTRIBUTES, Found, Remote


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


def push_folder(
    folder: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    create_pr: bool = True,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None,
    token_name: str = "HF_TOKEN",
    endpoint: str | None = None,
    progress: Progress,
    sleep: Callable[[float], None] | None = None,
) -> PushResult:
    """Push a checked folder to ``repo_id``: a pull request by default, no commit when the files are there already.

    Args:
        folder: the ``--output`` folder of a ``convert`` run (see ``checked.verify_folder``).
        repo_id: ``OWNER/NAME`` (OWNER: a user or an organisation). Created when missing.
        revision: the branch to commit to, or the pull request's base (default ``main``); with
            ``create_pr=False`` also an open pull request's ``refs/pr/N``.
        create_pr: open a pull request (the default) rather than commit to ``revision``.
        private: create a missing repository private; an existing public one is refused before any upload.
        commit_message: the commit's title instead of the generated one (the description keeps the provenance).
        token: a token with write access to OWNER (``hub_client.push_token``: ``HF_TOKEN``, or the token ``hf auth
            login`` stored); never printed.
        token_name: how messages name the token (``push_token``'s second value).
        endpoint: the Hub (default: huggingface_hub's, ``HF_ENDPOINT`` or https://huggingface.co).
        progress: where the log lines go (stderr).
        sleep: waits between retries (default ``time.sleep``; tests pass a recorder).

    Returns:
        What the push did (``PushResult``).

    Raises:
        PushError: the folder is not checked or changed (before any request); no token; a repository name the
            Hub refuses; ``private`` for a repository that exists and is public; a token without write access to
            OWNER (401/403); a missing branch; a failure that persisted through the retries. Each names the fix.
    """
    checked = verify_folder(folder)
    check_push(repo_id, revision=revision, create_pr=create_pr, commit_message=commit_message, token=token)
    assert token is not None
    client = HubClient(
        repo_id,
        revision=revision,
        create_pr=create_pr,
        token=token,
        token_name=token_name,
        endpoint=endpoint,
        progress=progress,
        sleep=sleep,
    )
    title = commit_message.strip() if commit_message else None
    with _no_progress_bars():
        return _Push(checked, client, private=private, title=title).run()


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    # huggingface_hub's tqdm bars ("model.safetensors: 0%|...", "Upload 0 LFS files") would interleave with the push's
    # own lines; off for the push, as they were before it. HF_HUB_DISABLE_PROGRESS_BARS=0 keeps them on: the user's
    # environment has priority over the call (huggingface_hub warns and changes nothing, so the warning is silenced).
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if are_progress_bars_disabled():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        disable_progress_bars()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enable_progress_bars()


def check_push(
    repo_id: str,
    *,
    revision: str | None,
    create_pr: bool,
    commit_message: str | None,
    token: str | None,
) -> None:
    """Refuse a push no request could make: a repository name huggingface_hub refuses, no token, a pull request
    against a ``refs/`` revision, a commit title that is not one line or is longer than a pull request's title.

    Reads nothing and asks nothing: ``convert --push-to-hub`` calls it before converting.

    Raises:
        PushError: the first rule broken, with the fix.
    """
    owner = _owner(repo_id)
    if not token:
        from huggingface_hub import constants

        raise PushError(
            f"no Hugging Face token: HF_TOKEN is not set and hf auth login stored none ({constants.HF_TOKEN_PATH}), "
            f"and pushing to {repo_id} needs one",
            f"set HF_TOKEN to {token_scope(owner)} (or store one with hf auth login)",
        )
    if create_pr and revision is not None and revision.startswith("refs/"):
        raise PushError(
            f"a pull request is opened against a branch, not {revision}",
            "pass a branch as the revision, or --no-create-pr to push onto that pull request",
        )
    if commit_message is not None and (not commit_message.strip() or "\n" in commit_message.strip()):
        raise PushError("the commit message must be one line of text", "pass the title; the description is generated")
    if commit_message is not None and create_pr and len(commit_message.strip()) > TITLE_LIMIT:
        raise PushError(
            f"the commit message has {len(commit_message.strip())} characters; a pull request's title has at most "
            f"{TITLE_LIMIT}",
            "shorten it",
        )


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


class _Push:
    """One push: the checked folder, the client, and what the Hub holds."""

    def __init__(self, checked: CheckedFolder, client: HubClient, *, private: bool, title: str | None) -> None:
        self.checked, self.client, self.private, self.title = checked, client, private, title
        self.remote = Remote(client, checked)

    def run(self) -> PushResult:
        checked, client = self.checked, self.client
        client.say(
            f"{checked.folder.name}: {len(checked.files)} files, {human_bytes(checked.total_bytes)}; the check passed "
            f"and {CHECKSUMS_NAME} verifies"
        )
        created = self.ensure_repo()
        found, remote = self.remote.look()
        if found is not None:
            return self.result(found, created=created, new_commit=False)
        removed = tuple(sorted(set(remote) - {f.path for f in checked.files} - {GITATTRIBUTES}))
        message = commit_message(checked, title=self.title, removed=removed)
        where = f"as a pull request against {client.revision}" if client.create_pr else f"to {client.revision}"
        client.say(
            f"uploading {len(checked.files)} files ({human_bytes(checked.total_bytes)}) to {client.repo_id} {where}"
        )
        if removed:
            client.say(f"the commit removes {len(removed)} file(s) the folder does not hold: {', '.join(removed)}")
        doing = "opening the pull request" if client.create_pr else f"committing to {client.revision}"
        try:
            info = client.retrying(
                "the commit", lambda: self.commit(message, removed), recheck=lambda: self.remote.look()[0]
            )
        except PushError:
            raise
        except Exception as exc:
            raise client.failure(exc, doing) from None
        if isinstance(info, Found):  # a lost answer: the commit was made all the same
            client.say("the commit's answer was lost, but the Hub holds the files: the commit was made")
            return self.result(info, created=created, new_commit=True, title=message.title, removed=removed)
        if client.create_pr and info.pr_num is None:  # the revision got the files meanwhile: huggingface_hub skipped
            return self.result(Found(info.oid), created=created, new_commit=False)
        done = Found(info.oid, info.pr_num, info.pr_url)
        return self.result(done, created=created, new_commit=True, title=message.title, removed=removed)

    def ensure_repo(self) -> bool:
        client = self.client
        try:
            info = client.retrying("the repository's info", lambda: client.api.repo_info(client.repo_id))
        except Exception as exc:
            if status_of(exc) != 404:
                raise client.failure(exc, "reading the repository") from None
        else:
            if self.private and not info.private:  # pushing would publish what was meant to stay private
                raise client.error(*public_repository(client.repo_id, client.endpoint))
            return False
        tries: list[int] = []

        def create() -> Any:
            # a 409 on the first try: the repository exists where HF_TOKEN cannot see it; on a retry, the try before
            # may have created it (its answer lost)
            tries.append(1)
            return client.api.create_repo(client.repo_id, private=self.private, exist_ok=len(tries) > 1)

        try:
            client.retrying("creating the repository", create)
        except Exception as exc:
            raise client.failure(exc, "creating the repository") from None
        client.say(f"created {'private' if self.private else 'public'} repository {client.repo_id}")
        return True

    def commit(self, message: CommitMessage, removed: tuple[str, ...]) -> Any:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        client, operations = self.client, []
        for file in self.checked.files:
            add = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=str(self.checked.folder / file.path))
            if add.upload_info.sha256.hex() != file.sha256:  # the bytes about to go are the bytes checked
                raise client.error(
                    f"{file.path} changed after it was verified, before the upload",
                    "push again once nothing writes to the folder",
                )
            operations.append(add)
        operations += [CommitOperationDelete(path_in_repo=path) for path in removed]
        try:
            return client.api.create_commit(
                client.repo_id,
                operations,
                commit_message=message.title,
                commit_description=message.description,
                revision=client.revision,
                create_pr=client.create_pr,
            )
        except ValueError as exc:
            if status_of(exc.__cause__) == 400:  # huggingface_hub's validate-yaml refused the card's metadata
                raise client.error(
                    f"the Hub refused the model card's metadata (README.md): {one_line(exc, skip=1)}",
                    f"this is a bug in longformer-convert: report it at {issues_url()} with this log",
                ) from None
            raise

    def result(
        self,
        found: Found,
        *,
        created: bool,
        new_commit: bool,
        title: str = "",
        removed: tuple[str, ...] = (),
    ) -> PushResult:
        client = self.client
        commit_url = f"{client.endpoint}/{client.repo_id}/commit/{found.oid}"
        already = None
        if not new_commit:
            already = (
                f"already proposed in pull request #{found.pr_num} {found.pr_url}"
                if found.pr_num is not None
                else f"already on {client.revision} at {found.oid}"
            )
            client.say(f"no new commit: the folder's files are {already}")
        elif found.pr_num is not None:
            client.say(f"opened pull request #{found.pr_num}: {found.pr_url}")
        else:
            client.say(f"committed to {client.revision}: {commit_url}")
        return PushResult(
            repo_id=client.repo_id,
            revision=client.revision,
            repo_url=f"{client.endpoint}/{client.repo_id}",
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
