"""Where a checked folder's files already are on the Hub: the target revision, or an open pull request against it.

A file is the same when its sha256 and size are (a file stored with LFS) or its git blob id is (a regular file);
a revision holds the folder when its files, but the Hub's own ``.gitattributes``, are exactly the folder's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PushError
from .checked import CheckedFolder
from .hub_client import HubClient

#: The Hub's own file in every repository: never compared, never deleted.
GITATTRIBUTES = ".gitattributes"


@dataclass(frozen=True)
class Found:
    """A commit that holds the folder's files: ``oid`` (40 hex), and the open pull request whose ref it heads."""

    oid: str
    pr_num: int | None = None
    pr_url: str | None = None


class Remote:
    """What the repository holds, compared with one checked folder (the folder's blob ids computed once)."""

    def __init__(self, client: HubClient, checked: CheckedFolder) -> None:
        self.client, self.checked = client, checked
        self.blob_ids: dict[str, str] = {}

    def look(self) -> tuple[Found | None, dict[str, Any]]:
        """Where the folder's files already are, and the target revision's files (path to huggingface_hub's
        ``RepoFile``).

        The revision first; with ``create_pr``, then every open pull request against it (its ``refs/pr/N``).

        Raises:
            PushError: the revision is no branch of the repository, or a request failed after its retries.
        """
        client = self.client
        try:
            refs = client.retrying(
                "the repository's refs",
                lambda: client.api.list_repo_refs(client.repo_id, include_pull_requests=True),
            )
            heads = {f"refs/heads/{r.name}": r.target_commit for r in refs.branches}
            heads.update({r.ref: r.target_commit for r in refs.pull_requests or []})
            ref = client.revision if client.revision.startswith("refs/") else f"refs/heads/{client.revision}"
            if ref not in heads:
                raise client.error(
                    f"{client.repo_id} has no branch {client.revision}",
                    f"create it on the Hub first, or leave the revision unset to push to main "
                    f"(branches: {', '.join(sorted(r.name for r in refs.branches)) or 'none'})",
                )
            remote = self.tree(heads[ref])
            if self.holds(remote):
                return Found(heads[ref]), remote
            if not client.create_pr:
                return None, remote
            return self.open_pull_request(heads, ref), remote
        except PushError:
            raise
        except Exception as exc:
            raise client.failure(exc, "reading the repository") from None

    def open_pull_request(self, heads: Mapping[str, str], ref: str) -> Found | None:
        client = self.client
        discussions = client.retrying(
            "the pull requests",
            lambda: list(
                client.api.get_repo_discussions(
                    client.repo_id, discussion_type="pull_request", discussion_status="open"
                )
            ),
        )
        for pr in discussions:
            oid = heads.get(f"refs/pr/{pr.num}")
            if oid is None or not self.holds(self.tree(oid)):
                continue
            details = client.retrying(
                f"pull request #{pr.num}", lambda pr=pr: client.api.get_discussion_details(client.repo_id, pr.num)
            )
            if details.target_branch in (ref, client.revision):
                return Found(oid, pr.num, pr.url)
        return None

    def tree(self, oid: str) -> dict[str, Any]:
        """The files (not folders) at commit ``oid``, by path."""
        entries = self.client.api.list_repo_tree(self.client.repo_id, recursive=True, revision=oid)
        return {e.path: e for e in entries if getattr(e, "blob_id", None) is not None and hasattr(e, "lfs")}

    def holds(self, remote: Mapping[str, Any]) -> bool:
        """Whether ``remote`` (a ``tree``) is exactly the folder's files, byte for byte."""
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
            self.blob_ids[path] = git_blob_id(self.checked.folder / path)
        return self.blob_ids[path]


def git_blob_id(path: Path) -> str:
    """The id git (and the Hub, for a file not stored with LFS) gives a file: sha1 of ``blob <size>\\0`` + bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
