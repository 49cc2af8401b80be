"""A local fake of the Hugging Face Hub, speaking the protocol huggingface_hub 2.x uses to download and to publish.

Point a client at it with ``point_client_at``: ``HF_ENDPOINT``, and Xet disabled. With ``HF_HUB_DISABLE_XET=1`` the
client uploads over the LFS protocol, which the Hub still serves; the Xet storage protocol is not spoken here. (With
``hf_xet`` installed and Xet on, as in production, ``upload_folder`` takes another path, ``pipelined_upload``, which
may split a large folder into several commits.)

Download endpoints (what ``snapshot_download`` and ``hf_hub_download`` call):

* ``GET /api/models/{repo_id}[/revision/{revision}]``: the model info (``sha``, ``siblings``, ...); a revision is a
  branch, ``refs/heads/{branch}``, a pull request's ``refs/pr/{num}`` (URL-encoded by the client) or a commit id.
* ``GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=...``: the listing (``type``, ``path``, ``size``,
  ``oid``, ``lfs``); no ``xetHash``, so the client downloads over plain HTTP. ``POST .../paths-info/{revision}``
  (form ``paths``) answers the same entries for the paths asked.
* ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: regular files answer 200 with ``ETag`` (the git blob
  id), ``X-Repo-Commit`` and ``Content-Length``; LFS files answer 302 to a CDN-like origin (``localhost`` rather
  than ``127.0.0.1``, so the client sends it no token) with ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``.
* ``GET /cdn-lfs/{sha256}``: the LFS bytes.

Publishing endpoints, in the order ``upload_folder`` calls them:

* ``POST /api/repos/create`` ``{"name", "organization", "visibility"}`` (``create_repo``; older clients send
  ``"private"``): 200 ``{"url", "name", "id"}``; the new repo holds one commit, ``initial commit`` by ``system``, with
  the Hub's default ``.gitattributes``. 409 ``You already created this model repo``, whose body keeps ``url``, which
  ``exist_ok=True`` reads; 401 ``Invalid username or password.`` without a token; 403 ``You don't have the rights to
  create a model under the namespace "X"`` for a read token, another user's namespace or one that does not exist; 400
  for a name the Hub refuses (the rules huggingface_hub's ``validate_repo_id`` mirrors, so its own check comes first).
* ``POST /api/validate-yaml`` ``{"content", "repoType"}``, when the folder holds a ``README.md`` (twice per
  ``upload_folder``): 200 ``{"errors": [], "warnings": []}``. A card without a YAML block warns ``empty or missing yaml
  metadata in repo card``, which the client raises as a ``UserWarning``; YAML that does not parse, metadata that is not
  a mapping, or a ``model-index`` without the fields the card schema requires answers 400, a ``ValueError`` client-side.
* ``POST /api/models/{repo_id}/preupload/{revision}[?create_pr=1]`` ``{"files": [{"path", "sample", "size"}],
  "gitIgnore"?, "gitAttributes"?}``, 256 files a request: per file ``uploadMode`` (``lfs`` when ``.gitattributes``
  tracks the path with ``filter=lfs``, when it is 10 MiB or more, or when its 512-byte sample holds a NUL byte or is not
  UTF-8; empty files are ``regular``), ``shouldIgnore`` (``.gitignore`` rules; the client leaves those files out of
  the commit) and ``oid``, the file already at that revision (its git blob id, or its sha256 when stored with LFS),
  which the client compares with its own to leave unchanged files out; and ``commitOid``, the revision's head. With
  ``create_pr`` the revision is the pull request's base branch: files are compared with the branch, not with open
  pull requests.
* ``POST /{repo_id}.git/info/lfs/objects/batch`` (git-lfs batch API, ``basic`` transfer), for every LFS file, changed
  or not: objects the repo already stores answer without ``actions``; others get an ``upload`` href (presigned-like, on
  the CDN origin: the client PUTs the bytes with no token) and a ``verify`` href on the Hub. The PUT stores the bytes
  after checking their sha256 and size (400 otherwise); ``POST /{repo_id}.git/info/lfs/objects/verify``
  ``{"oid", "size"}`` answers 200 once they are stored. The client sends ``ref`` (write access to that branch) unless
  ``create_pr``.
* ``POST /api/models/{repo_id}/commit/{revision}[?create_pr=1]``, ndjson: a ``header`` line (``summary``,
  ``description``, ``parentCommit``?) then ``file`` (base64 ``content``), ``lfsFile`` (``oid`` of an uploaded object),
  ``deletedFile`` and ``deletedFolder`` lines. Answers ``{"success", "commitOid", "commitUrl", "hookOutput"}`` and,
  with ``create_pr=1``, ``pullRequestUrl`` (``{endpoint}/{repo_id}/discussions/{num}``): the commit goes on a new ref
  ``refs/pr/{num}`` off the branch's head (or ``parentCommit``), with a pull request whose title and first comment are
  the commit's summary and description. Without it the branch (or an open pull request's ref) moves; ``parentCommit``
  other than the head answers 412 ``A commit has happened since. Please refresh and try again.``. LFS paths that
  ``.gitattributes`` does not track are appended to it, as the Hub does. An ``lfsFile`` never uploaded answers 400
  ``Your push was rejected because an LFS pointer pointed to a file that does not exist...``; a regular ``file`` of 10
  MiB or more 400 ``... contains files larger than 10 MiB``. When no file changed, ``upload_folder`` sends no commit:
  it asks ``repo-info`` for the head instead.
* ``GET /api/models/{repo_id}/discussions?p=&type=&status=&author=`` (``discussions``, ``count``, ``start``: 50 a
  page, newest first), ``GET .../discussions/{num}`` (``events``, ``changes.base``, ``filesWithConflicts``),
  ``GET .../refs[?include_prs=1]`` (``branches``, ``tags``, ``converts``, ``pullRequests``), ``GET
  .../commits/{revision}`` (first-parent history, newest first), ``GET /api/whoami-v2`` (the token's user, orgs and
  ``auth.accessToken.role``) and ``GET /api/agent-harnesses`` (an empty registry; see ``point_client_at``).

What ``upload_folder`` returns, a ``CommitInfo``: ``oid`` and ``commit_url`` (``{endpoint}/{repo_id}/commit/{oid}``)
of the new commit, and with ``create_pr`` ``pr_url``, ``pr_num`` and ``pr_revision`` (``refs/pr/{num}``). When no
file changed it commits nothing and returns the head of the revision (of the base branch, with ``create_pr``) with
``pr_url``/``pr_num`` ``None``, saying so only in a log warning (``No files have been modified since last commit.
Skipping to prevent empty commit.``). So the same folder pushed as a pull request twice opens two pull requests while
the first is open, and none once the branch holds the files.

Authorization is ``Authorization: Bearer TOKEN``. Tokens are registered with ``add_token`` (a user, a role ``read`` or
``write``, the organisations the user belongs to); a token the Hub does not know answers 401 ``Invalid credentials in
Authorization header`` everywhere. Reading a private repo outside the token's namespaces answers ``RepoNotFound``
(401 without a token, 404 with one). Writing (preupload, LFS batch and verify, commit) without a token answers 401
``Invalid username or password.``; with a read token 403 ``Authorization error.``; with a write token outside the
repo's namespace, a pull request on a public repo is allowed (anyone with write rights may open one) but the LFS batch
or the commit on a branch answers 403 ``Forbidden: pass `create_pr=1` as a query parameter to create a Pull
Request.``. Messages travel in ``X-Error-Message`` (and ``X-Error-Code``: ``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``, ``GatedRepo``) and a JSON ``{"error": ...}`` body, with an ``X-Request-Id``; huggingface_hub maps
them to ``RepositoryNotFoundError``, ``RevisionNotFoundError``, ``RemoteEntryNotFoundError``, ``GatedRepoError``,
``BadRequestError`` (400) or ``HfHubHTTPError``. Caveat: the client reads a 401 without ``X-Error-Code`` on
``/api/models/...`` as ``RepositoryNotFoundError`` only on ``https://`` endpoints (``REPO_API_REGEX``); from this
``http://`` fake the same answer is a plain ``HfHubHTTPError``. ``err.response.status_code`` is the same on both.

The statuses above are the Hub's. These texts are this fake's best reading of public reports and could not be checked
against the Hub: ``Authorization error.``; the ``pass create_pr=1`` 403 on the LFS batch (the Hub answers it on the
commit); the 400 texts of the repo-name and ``model-index`` checks; the ``name`` of a pull request in ``/refs`` (its
number); and the tolerance of a UTF-8 character cut at the end of a 512-byte sample.

What huggingface_hub 2.4 retries by itself (``utils/_http.py`` ``http_backoff``: up to 5 retries, sleeping 1, 2, 4, 8,
8 s, or ``Retry-After`` + 1 s, on 408/429/500/502/503/504 and on timeouts, network errors and dropped connections):
the preupload, the LFS batch, the LFS PUT and verify, and paginated listings (tree, commits). Not retried at all:
``create_repo`` (except its own loop on a 409 "conflicting operation"), ``repo_info``/``model_info``,
``validate-yaml``, the commit POST, ``get_repo_discussions``, ``get_discussion_details``, ``list_repo_refs``,
``get_paths_info`` and ``whoami``. A commit whose response is lost raises ``httpx2.RemoteProtocolError`` (not an
``HfHubHTTPError``) although the branch, or a new pull request, holds the commit.

Fault injection: ``hub.inject(endpoint, status, times=N, retry_after=S)`` makes the next N requests to an endpoint
answer ``status`` (500, 502, 503, 429, ...), ``drop=True`` closes the connection without an answer, and
``after_handling=True`` does either after the request took effect (a lost response). Every request is recorded
(``hub.requests``: method, decoded path, query, ``Authorization``, the other headers, the body, the endpoint and the
status answered). ``hub.repos[repo_id]`` is the server-side view: per ref the files with their bytes and sha256, the
commits (title, description, parents, author) and the pull requests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import importlib
import itertools
import json
import re
import threading
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

#: The idle time after which the server drops a kept-alive connection, and the time a test waits for it to stop.
SOCKET_TIMEOUT = 10.0

#: Files of this size or more are stored with LFS, and refused as regular files in a commit (the Hub's 10 MiB).
LFS_THRESHOLD = 10 * 1024 * 1024

#: The ``.gitattributes`` the Hub writes in a new model repo's initial commit.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        *("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel"),
        *("*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt"),
        *("*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm"),
        *("*.xz", "*.zip", "*.zst", "*tfevents*"),
    )
)

#: Pull requests and discussions listed per page by ``/discussions``.
DISCUSSIONS_PAGE = 50

#: The endpoints ``FakeHub.inject`` and ``Request.endpoint`` name.
ENDPOINTS = frozenset(
    {
        "create-repo",
        "validate-yaml",
        "whoami",
        "agent-harnesses",
        "repo-info",
        "tree",
        "paths-info",
        "preupload",
        "commit",
        "commits",
        "refs",
        "discussions",
        "discussion",
        "lfs-batch",
        "lfs-upload",
        "lfs-verify",
        "resolve",
        "cdn",
    }
)

ANONYMOUS_WRITE = "Invalid username or password."
INVALID_TOKEN = "Invalid credentials in Authorization header"
READ_TOKEN_WRITE = "Authorization error."
BRANCH_NEEDS_PR = "Forbidden: pass `create_pr=1` as a query parameter to create a Pull Request."
COMMIT_RACE = "A commit has happened since. Please refresh and try again."
DANGLING_LFS = (
    "Your push was rejected because an LFS pointer pointed to a file that does not exist. For instance, this can "
    "happen if you used git push --no-verify to push your changes. Offending file: - {path}"
)
TOO_LARGE = (
    "Your push was rejected because it contains files larger than {limit}. Please use https://git-lfs.github.com/ to "
    "store large files. See also: https://hf.co/docs/hub/repositories-getting-started#terminal Offending files: "
    "- {path} (ref: {ref})"
)
NO_METADATA = "empty or missing yaml metadata in repo card"
REPO_NAME_RULE = (
    "Repo id must use alphanumeric chars, '-', '_' or '.'. The name cannot start or end with '-' or '.', cannot "
    "contain '--' or '..', cannot end with '.git', and the maximum length is 96"
)
FAULT_MESSAGES = {
    429: "Too Many Requests",
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

#: What ``/api/agent-harnesses`` answers: the registry huggingface_hub's agent detection reads, here empty.
EMPTY_AGENT_REGISTRY: dict[str, Any] = {"standardEnvVars": [], "harnesses": {}}

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,96}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob, which the Hub serves as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_id(repo_id: str, revision: str) -> str:
    """A stable fake 40-hex commit id."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file a repo's tree holds for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _chunks(size: int, fill: bytes, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = fill * chunk
    left = size
    while left > 0:
        yield block[: min(chunk, left)]
        left -= chunk


@functools.cache
def _sha256(size: int, fill: bytes) -> str:
    digest = hashlib.sha256()
    for part in _chunks(size, fill):
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class LfsFile:
    """A large file stored with LFS: ``size`` copies of the byte ``fill`` (generated, never held in memory)."""

    size: int
    fill: bytes = b"\0"

    def chunks(self) -> Iterator[bytes]:
        return _chunks(self.size, self.fill)

    @property
    def sha256(self) -> str:
        return _sha256(self.size, self.fill)

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)


# -- git patterns (.gitattributes, .gitignore) ---------------------------------------------------------------------


@functools.cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _glob_matches(pattern: str, path: str) -> bool:
    # git: a pattern with a slash (other than a trailing one) is relative to the root, others match the basename
    if "/" in pattern.rstrip("/"):
        return _glob_regex(pattern.strip("/")).fullmatch(path) is not None
    return _glob_regex(pattern).fullmatch(path.rsplit("/", 1)[-1]) is not None


def lfs_tracked(gitattributes: str, path: str) -> bool:
    """Whether ``.gitattributes`` gives ``path`` the ``filter=lfs`` attribute (the last matching line decides)."""
    tracked = False
    for line in gitattributes.splitlines():
        pattern, *attributes = line.split() or ["#"]
        if pattern.startswith("#") or not _glob_matches(pattern, path):
            continue
        for attribute in attributes:
            if attribute.startswith("filter="):
                tracked = attribute == "filter=lfs"
            elif attribute in ("-filter", "!filter"):
                tracked = False
    return tracked


def gitignored(gitignore: str, path: str) -> bool:
    """Whether ``.gitignore`` ignores ``path`` (a pattern may name the file or any of its folders; ``!`` negates)."""
    parts = path.split("/")
    ignored = False
    for raw in gitignore.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:] if negate else line
        folders_only = line.endswith("/")
        candidates = ["/".join(parts[:k]) for k in range(1, len(parts))] + ([] if folders_only else [path])
        if any(_glob_matches(line.rstrip("/"), candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def looks_binary(sample: bytes, size: int) -> bool:
    """The Hub's reading of a file's first 512 bytes: binary when they hold a NUL byte or are not UTF-8 text."""
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as error:
        # a sample cut inside a multi-byte character is still text
        return not (len(sample) < size and error.reason == "unexpected end of data")
    return False


def valid_repo_name(name: str) -> bool:
    return (
        _NAME.fullmatch(name) is not None
        and name[0] not in "-."
        and name[-1] not in "-."
        and "--" not in name
        and ".." not in name
        and not name.endswith(".git")
    )


# -- server-side state ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A file in a commit's tree: a regular git blob (``data``) or an LFS file (its bytes in the repo's LFS store)."""

    size: int
    sha256: str
    data: bytes | None = None

    @property
    def lfs(self) -> bool:
        return self.data is None

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    @property
    def blob_id(self) -> str:
        """The git blob id: of the bytes for a regular file, of the pointer for an LFS file."""
        return git_blob_id(self.pointer if self.data is None else self.data)

    @property
    def oid(self) -> str:
        """What the preupload endpoint answers as ``oid``, and the client compares with its own file."""
        return self.sha256 if self.data is None else git_blob_id(self.data)

    @classmethod
    def regular(cls, data: bytes) -> Entry:
        return cls(size=len(data), sha256=hashlib.sha256(data).hexdigest(), data=data)


@dataclass(frozen=True)
class Commit:
    oid: str
    title: str
    description: str
    parents: tuple[str, ...]
    tree: Mapping[str, Entry]
    author: str
    date: str


@dataclass
class Discussion:
    """A pull request (``is_pull_request``) or discussion; a pull request's commits live on ``refs/pr/{num}``."""

    num: int
    title: str
    description: str
    author: str
    is_pull_request: bool
    created_at: str
    base: str = "refs/heads/main"
    status: Literal["open", "closed", "merged", "draft"] = "open"
    commits: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"refs/pr/{self.num}"


@dataclass
class FakeRepo:
    """A model repo: its commits, the refs (branches, ``refs/pr/N``) that point at them, its LFS objects and PRs."""

    repo_id: str
    refs: dict[str, str]
    commits: dict[str, Commit]
    lfs_objects: dict[str, bytes | LfsFile] = field(default_factory=dict)
    private: bool = False
    gated: bool = False
    #: tokens that may read a private repo, or that accepted a gated repo's terms
    allowed_tokens: set[str] = field(default_factory=set)
    discussions: list[Discussion] = field(default_factory=list)
    created_at: str = field(default_factory=_now)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def commit(self, revision: str) -> str | None:
        """The commit id a revision names: a branch, ``refs/heads/X``, ``refs/pr/N`` or a commit id."""
        if revision in self.refs:
            return self.refs[revision]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in self.refs:
            return self.refs[revision[len("refs/heads/") :]]
        return revision if revision in self.commits else None

    def tree(self, revision: str = "main") -> dict[str, Entry]:
        oid = self.commit(revision)
        if oid is None:
            raise KeyError(f"{self.repo_id} has no revision {revision!r}")
        return dict(self.commits[oid].tree)

    def read(self, path: str, revision: str = "main") -> bytes:
        """The bytes of ``path`` at ``revision``, from the git blob or the LFS store."""
        entry = self.tree(revision)[path]
        if entry.data is not None:
            return entry.data
        stored = self.lfs_objects[entry.sha256]
        return stored if isinstance(stored, bytes) else b"".join(stored.chunks())

    def files_at(self, revision: str = "main") -> dict[str, bytes]:
        return {path: self.read(path, revision) for path in sorted(self.tree(revision))}

    def sha256sums(self, revision: str = "main") -> dict[str, str]:
        """Every file's sha256 at ``revision``, to compare with a folder's ``SHA256SUMS``."""
        return {path: entry.sha256 for path, entry in sorted(self.tree(revision).items())}

    def history(self, revision: str = "main") -> list[Commit]:
        """The commits reachable from ``revision`` by first parents, newest first."""
        out, oid = [], self.commit(revision)
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parents[0] if self.commits[oid].parents else None
        return out

    @property
    def pull_requests(self) -> list[Discussion]:
        return [d for d in self.discussions if d.is_pull_request]

    @property
    def files(self) -> dict[str, bytes]:
        """The regular files at ``main``."""
        return {path: e.data for path, e in self.tree("main").items() if e.data is not None}

    def names(self, revision: str = "main") -> list[str]:
        return sorted(self.tree(revision))


@dataclass(frozen=True)
class HubToken:
    """An access token: its user, its role, and the organisations the user belongs to (its write namespaces)."""

    token: str
    user: str | None
    role: Literal["read", "write"] = "write"
    orgs: tuple[str, ...] = ()

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.user, *self.orgs) if self.user else ()


@dataclass(frozen=True)
class Request:
    """A request as the fake received it, and the status it answered (0: the connection was dropped)."""

    method: str
    path: str
    query: str
    authorization: str | None
    endpoint: str = ""
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    #: what the request named within its endpoint: the filename of a ``resolve``
    target: str = ""


@dataclass
class Fault:
    """An injected failure: ``status`` (``None``: drop the connection) for the next ``times`` requests."""

    endpoint: str
    times: int
    status: int | None
    retry_after: int | None
    after_handling: bool


class HubError(Exception):
    """An error answer: the status, ``X-Error-Message`` (and ``X-Error-Code``), and a JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        header: bool = True,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.body = body if body is not None else {"error": message}
        self.headers = dict(headers or {})
        if header:
            self.headers["X-Error-Message"] = message
        if code:
            self.headers["X-Error-Code"] = code
        if status == 401:
            self.headers.setdefault("WWW-Authenticate", 'Bearer realm="Authentication required", charset="UTF-8"')


def _repo_not_found(token: HubToken | None) -> HubError:
    return HubError(404 if token else 401, "Repository not found", "RepoNotFound")


def _revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class FakeHub:
    """The fake Hub. ``with hub.running(): ...`` serves it on ``hub.url`` (127.0.0.1, an ephemeral port)."""

    def __init__(self, *, lfs_threshold: int = LFS_THRESHOLD) -> None:
        self.repos: dict[str, FakeRepo] = {}
        #: tokens the Hub knows without a user (read-only); any other ``Authorization: Bearer`` gets 401
        self.valid_tokens: set[str] = set()
        #: tokens with a user and a role, from ``add_token``
        self.tokens: dict[str, HubToken] = {}
        self.requests: list[Request] = []
        #: tracebacks of requests the fake itself failed on (a test should find none)
        self.server_errors: list[str] = []
        self.lfs_threshold = lfs_threshold
        #: the client's cache folder, set by whoever points a client at this hub
        self.cache: Path | None = None
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._secret = uuid.uuid4().bytes
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content ----------------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        folder: Path | None = None,
        *,
        files: dict[str, bytes] | None = None,
        lfs: dict[str, LfsFile] | None = None,
        revisions: tuple[str, ...] = ("main",),
        private: bool = False,
        gated: bool = False,
        allowed_tokens: tuple[str, ...] = (),
    ) -> FakeRepo:
        """Serve ``folder``'s files (plus ``files`` and ``lfs``) at every branch in ``revisions``."""
        content = {".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n", "README.md": b"# fake\n"}
        if folder is not None:
            content.update({p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()})
        content.update(files or {})
        tree = {path: Entry.regular(data) for path, data in content.items()}
        tree.update({path: Entry(size=f.size, sha256=f.sha256) for path, f in (lfs or {}).items()})
        repo = FakeRepo(
            repo_id=repo_id,
            refs={},
            commits={},
            lfs_objects={f.sha256: f for f in (lfs or {}).values()},
            private=private,
            gated=gated,
            allowed_tokens=set(allowed_tokens),
        )
        for revision in revisions:
            oid = commit_id(repo_id, revision)
            repo.commits[oid] = Commit(oid, "initial commit", "", (), tree, "system", repo.created_at)
            repo.refs[revision] = oid
        self.repos[repo_id] = repo
        self.valid_tokens.update(allowed_tokens)
        return repo

    def add_token(
        self, token: str, *, user: str, role: Literal["read", "write"] = "write", orgs: tuple[str, ...] = ()
    ) -> HubToken:
        """Register a token of ``user``, who belongs to ``orgs``: a write token writes under those namespaces."""
        hub_token = HubToken(token, user, role, tuple(orgs))
        self.tokens[token] = hub_token
        return hub_token

    # -- faults -----------------------------------------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        status: int | None = 500,
        *,
        times: int = 1,
        retry_after: int | None = None,
        drop: bool = False,
        after_handling: bool = False,
    ) -> None:
        """Make the next ``times`` requests to ``endpoint`` answer ``status`` (``Retry-After`` when given), or, with
        ``drop``, close the connection without an answer; ``after_handling`` lets the request take effect first."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {sorted(ENDPOINTS)}")
        with self._lock:
            self._faults.append(Fault(endpoint, times, None if drop else status, retry_after, after_handling))

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint == endpoint and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # -- what was asked ---------------------------------------------------------------------------------------

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def calls(self, endpoint: str) -> list[Request]:
        """The requests made to ``endpoint``, in order."""
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def endpoints(self) -> list[str]:
        with self._lock:
            return [r.endpoint for r in self.requests]

    def token_leaks(self, token: str) -> list[Request]:
        """Requests that carried ``token`` anywhere but their ``Authorization`` header (LFS uploads' bytes are not
        recorded: ``stored_leaks`` looks into what was stored)."""
        with self._lock:
            requests = list(self.requests)
        return [
            r
            for r in requests
            if token in r.path
            or token in r.query
            or token.encode() in r.body
            or any(token in value for name, value in r.headers if name.lower() != "authorization")
        ]

    def stored_leaks(self, token: str) -> list[str]:
        """Where ``token`` is stored on the Hub: in a file at some ref, a commit message or a pull request."""
        with self._lock:
            found = []
            for repo in self.repos.values():
                for ref in sorted(repo.refs):
                    found += [f"{repo.repo_id}@{ref}:{p}" for p, d in repo.files_at(ref).items() if token.encode() in d]
                found += [
                    f"{repo.repo_id} commit {c.oid}" for c in repo.commits.values() if token in c.title + c.description
                ]
                found += [f"{repo.repo_id}#{d.num}" for d in repo.discussions if token in d.title + d.description]
            return found

    def requested_files(self, repo_id: str) -> set[str]:
        """Filenames asked for under ``/{repo_id}/resolve/{revision}/`` (HEAD or GET)."""
        prefix = f"/{repo_id}/resolve/"
        with self._lock:
            return {r.target for r in self.requests if r.endpoint == "resolve" and r.path.startswith(prefix)}

    # -- serving ----------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake hub is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def cdn_url(self) -> str:
        """Another origin for the same server, as the Hub's CDN and storage are: clients send it no token."""
        return f"http://{self._cdn_host}:{self.port}"

    @contextlib.contextmanager
    def running(self, host: str = "127.0.0.1", cdn_host: str = "localhost") -> Iterator[FakeHub]:
        """Serve on ``host`` (an ephemeral port), the CDN origin named ``cdn_host``. A client in a container reaches
        the fake at an address of this machine the container can route to, as both names (the Hub's URLs it
        answers with must work there too)."""
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._host, self._cdn_host = host, cdn_host
        self._server = ThreadingHTTPServer((host, 0), handler)
        self._server.daemon_threads = True
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)  # stop promptly at the end
        self._thread = threading.Thread(target=serve, name="fake-hub", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(SOCKET_TIMEOUT)

    # -- the Hub's rules --------------------------------------------------------------------------------------

    def caller(self, authorization: str | None) -> HubToken | None:
        """The token a request carries; ``HubError`` 401 for one the Hub does not know."""
        if authorization is None:
            return None
        token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        if token in self.tokens:
            return self.tokens[token]
        if token in self.valid_tokens:
            return HubToken(token, None, "read")
        raise HubError(401, INVALID_TOKEN)

    def readable(self, repo_id: str, token: HubToken | None) -> FakeRepo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._may_read_private(repo, token)):
            raise _repo_not_found(token)
        return repo

    @staticmethod
    def _may_read_private(repo: FakeRepo, token: HubToken | None) -> bool:
        return token is not None and (token.token in repo.allowed_tokens or repo.namespace in token.namespaces)

    def writable(self, repo_id: str, token: HubToken | None, *, branch: str | None) -> FakeRepo:
        """The repo, if ``token`` may write to ``branch`` of it (``None``: open a pull request)."""
        if token is None:
            raise HubError(401, ANONYMOUS_WRITE)
        repo = self.readable(repo_id, token)
        if token.role != "write":
            raise HubError(403, READ_TOKEN_WRITE)
        if repo.namespace in token.namespaces:
            return repo
        pr = self._pull_request(repo, branch) if branch else None
        if branch is not None and (pr is None or pr.author != token.user):
            raise HubError(403, BRANCH_NEEDS_PR)
        return repo

    @staticmethod
    def _pull_request(repo: FakeRepo, ref: str) -> Discussion | None:
        match = re.fullmatch(r"refs/pr/(\d+)", ref)
        found = [d for d in repo.pull_requests if match and d.num == int(match[1])]
        return found[0] if found else None

    def create_repo(self, payload: dict[str, Any], token: HubToken | None) -> dict[str, Any]:
        if token is None:
            raise HubError(401, ANONYMOUS_WRITE)
        repo_type = payload.get("type") or "model"
        name, namespace = str(payload.get("name") or ""), payload.get("organization") or token.user or ""
        if token.role != "write" or namespace not in token.namespaces:
            message = f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"'
            raise HubError(403, message)
        if repo_type != "model":
            raise HubError(400, f"This fake Hub serves model repos only, not {repo_type!r}")
        if not valid_repo_name(name):
            raise HubError(400, f"{REPO_NAME_RULE}: '{name}'")
        repo_id = f"{namespace}/{name}"
        url = f"{self.url}/{repo_id}"
        with self._lock:
            existing = [other for other in self.repos if other.lower() == repo_id.lower()]  # names ignore case
            if existing:
                url = f"{self.url}/{existing[0]}"
                # the body keeps the url: create_repo(exist_ok=True) reads it from the 409
                body = {"error": "You already created this model repo", "url": url}
                raise HubError(409, body["error"], body=body, header=False)
            private = payload.get("visibility") == "private" or payload.get("private") is True
            repo = FakeRepo(repo_id=repo_id, refs={}, commits={}, private=private)
            tree = {".gitattributes": Entry.regular(DEFAULT_GITATTRIBUTES.encode())}
            oid = self._new_oid(repo_id, "", "initial commit")
            repo.commits[oid] = Commit(oid, "initial commit", "", (), tree, "system", repo.created_at)
            repo.refs["main"] = oid
            self.repos[repo_id] = repo
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    def _new_oid(self, repo_id: str, parent: str, title: str) -> str:
        return hashlib.sha1(f"{repo_id}\n{parent}\n{title}\n{next(self._counter)}".encode()).hexdigest()

    def preupload(self, repo: FakeRepo, revision: str, payload: dict[str, Any]) -> dict[str, Any]:
        head = repo.commit(revision)
        if head is None:
            raise _revision_not_found(revision)
        tree = repo.commits[head].tree
        attributes = payload.get("gitAttributes")
        if attributes is None:
            attributes = tree[".gitattributes"].data.decode() if ".gitattributes" in tree else ""
        ignore = payload.get("gitIgnore")
        if ignore is None:
            ignore = (tree[".gitignore"].data or b"").decode() if ".gitignore" in tree else ""
        answers = []
        for file in payload.get("files") or []:
            path, size = str(file["path"]), int(file["size"])
            sample = base64.b64decode(file.get("sample") or "")
            lfs = size > 0 and (
                lfs_tracked(attributes, path) or size >= self.lfs_threshold or looks_binary(sample, size)
            )
            answer: dict[str, Any] = {"path": path, "uploadMode": "lfs" if lfs else "regular"}
            answer["shouldIgnore"] = gitignored(ignore, path) if ignore else False
            if path in tree:
                answer["oid"] = tree[path].oid
            answers.append(answer)
        return {"files": answers, "commitOid": head}

    def lfs_batch(self, repo: FakeRepo, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("operation") != "upload":
            raise HubError(422, "Only the upload operation is served")
        objects = []
        for item in payload.get("objects") or []:
            oid, size = str(item.get("oid")), item.get("size")
            if not _SHA256.fullmatch(oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "Invalid object"}})
                continue
            stored = repo.lfs_objects.get(oid)
            if stored is not None and _stored_size(stored) == size:
                objects.append({"oid": oid, "size": size})
                continue
            signature = self._signature(repo.repo_id, oid, size)
            upload = f"{self.cdn_url}/lfs-upload/{repo.repo_id}/{oid}?size={size}&X-Amz-Signature={signature}"
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": upload, "expires_at": "2099-01-01T00:00:00Z"},
                        "verify": {"href": f"{self.url}/{repo.repo_id}.git/info/lfs/objects/verify"},
                    },
                }
            )
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def _signature(self, repo_id: str, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{repo_id}:{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    def lfs_upload(self, repo_id: str, oid: str, query: dict[str, list[str]], data: bytes) -> None:
        size = int((query.get("size") or ["-1"])[0])
        signature = (query.get("X-Amz-Signature") or [""])[0]
        repo = self.repos.get(repo_id)
        if repo is None or not hmac.compare_digest(signature, self._signature(repo_id, oid, size)):
            raise HubError(403, "SignatureDoesNotMatch", header=False)
        if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "BadDigest: the uploaded bytes do not match the object's sha256 and size", header=False)
        with self._lock:
            repo.lfs_objects[oid] = data

    def commit(
        self, repo: FakeRepo, revision: str, lines: list[dict[str, Any]], *, token: HubToken, create_pr: bool
    ) -> dict[str, Any]:
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of the commit payload must be its header")
        header = lines[0].get("value") or {}
        title, description = str(header.get("summary") or ""), str(header.get("description") or "")
        if not title:
            raise HubError(400, "A commit needs a summary")
        with self._lock:
            branch = revision.removeprefix("refs/heads/")
            head = repo.refs.get(branch)
            if head is None:  # commits go on a branch or a pull request's ref, never on a commit id or a tag
                raise _revision_not_found(revision)
            parent_commit = header.get("parentCommit")
            pr = self._pull_request(repo, revision) if not create_pr else None
            if create_pr:
                if revision.startswith("refs/pr/"):
                    raise HubError(400, "A pull request can only be opened against a branch")
                if parent_commit is not None:
                    if parent_commit not in repo.commits:
                        raise HubError(412, COMMIT_RACE)
                    head = parent_commit
            elif parent_commit is not None and parent_commit != head:
                raise HubError(412, COMMIT_RACE)
            ref_name = revision if revision.startswith("refs/pr/") else f"refs/heads/{revision}"
            tree = self._apply(repo, dict(repo.commits[head].tree), lines[1:], ref_name)
            oid = self._new_oid(repo.repo_id, head, title)
            author = token.user or "anonymous"
            repo.commits[oid] = Commit(oid, title, description, (head,), tree, author, _now())
            answer: dict[str, Any] = {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self.url}/{repo.repo_id}/commit/{oid}",
                "hookOutput": "",
            }
            if create_pr:
                num = len(repo.discussions) + 1
                pr = Discussion(
                    num, title, description, author, True, _now(), base=f"refs/heads/{branch}", commits=[oid]
                )
                repo.discussions.append(pr)
                repo.refs[pr.ref] = oid
                answer["pullRequestUrl"] = f"{self.url}/{repo.repo_id}/discussions/{num}"
            elif pr is not None:
                pr.commits.append(oid)
                repo.refs[pr.ref] = oid
            else:
                repo.refs[branch] = oid
        return answer

    def _apply(
        self, repo: FakeRepo, tree: dict[str, Entry], operations: list[dict[str, Any]], ref: str
    ) -> dict[str, Entry]:
        lfs_paths = []
        for line in operations:
            key, value = line.get("key"), line.get("value") or {}
            path = str(value.get("path") or "")
            if not path or path.startswith("/") or ".." in path.split("/") or path.split("/")[0] == ".git":
                raise HubError(400, f"Invalid path: {path!r}")
            if key == "file":
                try:
                    data = (
                        base64.b64decode(value.get("content") or "", validate=True)
                        if value.get("encoding") == "base64"
                        else str(value.get("content") or "").encode()
                    )
                except binascii.Error as error:
                    raise HubError(400, f"Invalid base64 content for {path}") from error
                if len(data) >= self.lfs_threshold:
                    limit = f"{self.lfs_threshold / 2**20:g} MiB"
                    raise HubError(400, TOO_LARGE.format(limit=limit, path=path, ref=ref))
                tree[path] = Entry.regular(data)
            elif key == "lfsFile":
                oid = str(value.get("oid") or "")
                stored = repo.lfs_objects.get(oid)
                if stored is None or ("size" in value and value["size"] != _stored_size(stored)):
                    raise HubError(400, DANGLING_LFS.format(path=path))
                tree[path] = Entry(size=_stored_size(stored), sha256=oid)
                lfs_paths.append(path)
            elif key == "deletedFile":
                if path not in tree:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                inside = [p for p in tree if p.startswith(path.rstrip("/") + "/")]
                if not inside:
                    raise HubError(404, "A folder with this name doesn't exist", "EntryNotFound")
                for p in inside:
                    del tree[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        attributes = (tree[".gitattributes"].data or b"").decode() if ".gitattributes" in tree else ""
        untracked = [p for p in lfs_paths if not lfs_tracked(attributes, p)]
        if untracked:
            if attributes and not attributes.endswith("\n"):
                attributes += "\n"
            attributes += "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in untracked)
            tree[".gitattributes"] = Entry.regular(attributes.encode())
        return dict(sorted(tree.items()))

    def whoami(self, token: HubToken | None) -> dict[str, Any]:
        if token is None or token.user is None:
            raise HubError(401, ANONYMOUS_WRITE if token is None else INVALID_TOKEN)
        return {
            "type": "user",
            "id": hashlib.sha1(token.user.encode()).hexdigest()[:24],
            "name": token.user,
            "fullname": token.user,
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write"} for org in token.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": token.role}},
        }


def _stored_size(stored: bytes | LfsFile) -> int:
    return len(stored) if isinstance(stored, bytes) else stored.size


def _card_errors(content: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    block = _FRONT_MATTER.match(content)
    if block is None:
        warning = {"message": NO_METADATA, "help": "https://huggingface.co/docs/hub/model-cards#model-card-metadata"}
        return [], [warning]
    try:
        metadata = yaml.safe_load(block[2])
    except yaml.YAMLError as error:
        return [{"message": f"Invalid YAML in README.md: {error}", "type": "error"}], []
    if not isinstance(metadata, dict):
        return [{"message": "The YAML metadata of your README.md is invalid.", "type": "error"}], []
    return [{"message": m, "type": "error"} for m in _model_index_errors(metadata.get("model-index"))], []


def _model_index_errors(index: object) -> list[str]:
    # The card schema's model-index: a list of {name, results: [{task: {type}, dataset: {type, name}, metrics:
    # [{type, value}]}]} (https://github.com/huggingface/hub-docs/blob/main/modelcard.md)
    if index is None:
        return []
    if not isinstance(index, list) or not index:
        return ['"model-index" must be a non-empty array']
    errors = []
    for i, model in enumerate(index):
        where = f'"model-index[{i}]'
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'{where}.name" is required')
            continue
        results = model.get("results")
        if not isinstance(results, list) or not results:
            errors.append(f'{where}.results" must be a non-empty array')
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            task, dataset, metrics = (
                result.get(k) if isinstance(result, dict) else None for k in ("task", "dataset", "metrics")
            )
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f'{at}.task.type" is required')
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
                errors.append(f'{at}.dataset" requires "type" and "name"')
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'{at}.metrics" must be a non-empty array')
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str) or "value" not in metric:
                    errors.append(f'{at}.metrics[{k}]" requires "type" and "value"')
    return errors


@dataclass
class _Reply:
    status: int
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    length: int | None = None
    drop: bool = False

    @classmethod
    def json(cls, payload: object, status: int = 200, content_type: str = "application/json; charset=utf-8") -> _Reply:
        return cls(status, json.dumps(payload).encode(), content_type=content_type)

    @classmethod
    def error(cls, error: HubError) -> _Reply:
        return cls(error.status, json.dumps(error.body).encode(), headers=dict(error.headers))


_LFS_JSON = "application/vnd.git-lfs+json"


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server_version = "FakeHub/1.0"
    # headers and body go out in separate writes: without TCP_NODELAY each answer waits for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _write(self, reply: _Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        body = reply.body
        length = reply.length if reply.length is not None else (len(body) if isinstance(body, bytes) else None)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(length or 0))
        self.send_header("X-Request-Id", f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        for part in [body] if isinstance(body, bytes) else body:
            self.wfile.write(part)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        body = self._read_body()
        endpoint, handler = self._route(split.path)
        target = "/".join(unquote(s) for s in split.path.strip("/").split("/")[4:])
        fault = self.hub._take_fault(endpoint) if endpoint else None
        reply: _Reply | None = None
        if fault is not None and not fault.after_handling:
            reply = self._fault_reply(fault)
        else:
            try:
                with self.hub._lock:  # one request at a time changes or reads the repos
                    reply = handler(split, body) if handler else _Reply.error(HubError(404, "Not Found"))
            except HubError as error:
                reply = _Reply.error(error)
            except Exception:  # a bug in the fake: answer 500 and keep the traceback for the test to see
                self.hub.server_errors.append(traceback.format_exc())
                reply = _Reply.error(HubError(500, "the fake hub failed"))
            if fault is not None:
                reply = self._fault_reply(fault)
        headers = tuple((name, value) for name, value in self.headers.items())
        status = 0 if reply.drop else reply.status
        recorded = Request(
            self.command,
            unquote(split.path),
            split.query,
            self.headers.get("Authorization"),
            endpoint,
            status,
            headers,
            b"" if endpoint == "lfs-upload" else body,  # LFS bytes are in the repo once stored
            target if endpoint == "resolve" else "",
        )
        self.hub.record(recorded)
        self._write(reply)

    @staticmethod
    def _fault_reply(fault: Fault) -> _Reply:
        if fault.status is None:
            return _Reply(0, drop=True)
        error = HubError(fault.status, FAULT_MESSAGES.get(fault.status, "Error"))
        if fault.retry_after is not None:
            error.headers["Retry-After"] = str(fault.retry_after)
        return _Reply.error(error)

    def _token(self) -> HubToken | None:
        return self.hub.caller(self.headers.get("Authorization"))

    # -- routing ----------------------------------------------------------------------------------------------

    def _route(self, raw_path: str) -> tuple[str, Any]:
        segments = [unquote(s) for s in raw_path.strip("/").split("/")]
        method = self.command
        get = method in ("GET", "HEAD")
        if raw_path.startswith("/cdn-lfs/") and get:
            return "cdn", functools.partial(self._cdn, segments[1] if len(segments) > 1 else "")
        if raw_path.startswith("/lfs-upload/") and method == "PUT" and len(segments) == 4:
            return "lfs-upload", functools.partial(self._lfs_upload, f"{segments[1]}/{segments[2]}", segments[3])
        if segments == ["api", "repos", "create"] and method == "POST":
            return "create-repo", self._create_repo
        if segments == ["api", "validate-yaml"] and method == "POST":
            return "validate-yaml", self._validate_yaml
        if segments == ["api", "whoami-v2"] and get:
            return "whoami", self._whoami
        if segments == ["api", "agent-harnesses"] and get:
            return "agent-harnesses", lambda split, body: _Reply.json(EMPTY_AGENT_REGISTRY)
        if len(segments) >= 4 and segments[:2] == ["api", "models"]:
            return self._route_api(f"{segments[2]}/{segments[3]}", segments[4:], get, method)
        if len(segments) == 6 and segments[1].endswith(".git") and segments[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{segments[0]}/{segments[1][: -len('.git')]}"
            if segments[5] == "batch" and method == "POST":
                return "lfs-batch", functools.partial(self._lfs_batch, repo_id)
            if segments[5] == "verify" and method == "POST":
                return "lfs-verify", functools.partial(self._lfs_verify, repo_id)
        if len(segments) >= 5 and segments[2] == "resolve" and get:
            repo_id, revision, filename = f"{segments[0]}/{segments[1]}", segments[3], "/".join(segments[4:])
            return "resolve", functools.partial(self._resolve, repo_id, revision, filename)
        return "", None

    def _route_api(self, repo_id: str, rest: list[str], get: bool, method: str) -> tuple[str, Any]:
        call = functools.partial
        if not rest and get:
            return "repo-info", call(self._info, repo_id, "main")
        kind, args = rest[0], rest[1:]
        if kind == "revision" and args and get:
            return "repo-info", call(self._info, repo_id, "/".join(args))
        if kind == "tree" and args and get:
            return "tree", call(self._tree, repo_id, args[0], "/".join(args[1:]))
        if kind == "paths-info" and len(args) == 1 and method == "POST":
            return "paths-info", call(self._paths_info, repo_id, args[0])
        if kind == "preupload" and len(args) == 1 and method == "POST":
            return "preupload", call(self._preupload, repo_id, args[0])
        if kind == "commit" and len(args) == 1 and method == "POST":
            return "commit", call(self._commit, repo_id, args[0])
        if kind == "commits" and len(args) == 1 and get:
            return "commits", call(self._commits, repo_id, args[0])
        if kind == "refs" and not args and get:
            return "refs", call(self._refs, repo_id)
        if kind == "discussions" and not args and get:
            return "discussions", call(self._discussions, repo_id)
        if kind == "discussions" and len(args) == 1 and args[0].isdigit() and get:
            return "discussion", call(self._discussion, repo_id, int(args[0]))
        return "", None

    # -- endpoints --------------------------------------------------------------------------------------------

    def _json_body(self, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from error
        if not isinstance(payload, dict):
            raise HubError(400, "The body must be a JSON object")
        return payload

    def _create_repo(self, split: Any, body: bytes) -> _Reply:
        return _Reply.json(self.hub.create_repo(self._json_body(body), self._token()))

    def _validate_yaml(self, split: Any, body: bytes) -> _Reply:
        self._token()
        errors, warnings = _card_errors(str(self._json_body(body).get("content") or ""))
        return _Reply.json({"errors": errors, "warnings": warnings}, 400 if errors else 200)

    def _whoami(self, split: Any, body: bytes) -> _Reply:
        return _Reply.json(self.hub.whoami(self._token()))

    def _info(self, repo_id: str, revision: str, split: Any, body: bytes) -> _Reply:
        repo = self.hub.readable(repo_id, self._token())
        commit = repo.commit(revision)
        if commit is None:
            raise _revision_not_found(revision)
        return _Reply.json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.namespace,
                "sha": commit,
                "lastModified": repo.commits[commit].date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "library_name": "transformers",
                "tags": ["transformers", "longformer"],
                "siblings": [{"rfilename": name} for name in sorted(repo.commits[commit].tree)],
            }
        )

    @staticmethod
    def _entry(path: str, entry: Entry) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
        if entry.lfs:
            out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
        return out

    @staticmethod
    def _folder(path: str, tree: Mapping[str, Entry]) -> dict[str, Any]:
        inside = sorted((p, e.blob_id) for p, e in tree.items() if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(repr(inside).encode()).hexdigest(), "size": 0, "path": path}

    def _listing(self, tree: Mapping[str, Entry], prefix: str, recursive: bool) -> list[dict[str, Any]]:
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        out: dict[str, dict[str, Any]] = {}
        for path, entry in sorted(tree.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            for depth in range(1, len(parts)):
                folder = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    out.setdefault(folder, self._folder(folder, tree))
            if recursive or len(parts) == 1:
                out[path] = self._entry(path, entry)
        return list(out.values())

    def _revision_tree(self, repo_id: str, revision: str) -> Mapping[str, Entry]:
        repo = self.hub.readable(repo_id, self._token())
        commit = repo.commit(revision)
        if commit is None:
            raise _revision_not_found(revision)
        return repo.commits[commit].tree

    def _tree(self, repo_id: str, revision: str, path: str, split: Any, body: bytes) -> _Reply:
        tree = self._revision_tree(repo_id, revision)
        recursive = (parse_qs(split.query).get("recursive") or ["false"])[0].lower() in ("1", "true")
        if path and path not in tree and not any(p.startswith(path + "/") for p in tree):
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return _Reply.json(self._listing(tree, path, recursive))

    def _paths_info(self, repo_id: str, revision: str, split: Any, body: bytes) -> _Reply:
        tree = self._revision_tree(repo_id, revision)
        asked = parse_qs(body.decode()).get("paths", [])
        out = []
        for path in asked:
            if path in tree:
                out.append(self._entry(path, tree[path]))
            elif any(p.startswith(path.rstrip("/") + "/") for p in tree):
                out.append(self._folder(path.rstrip("/"), tree))
        return _Reply.json(out)

    def _preupload(self, repo_id: str, revision: str, split: Any, body: bytes) -> _Reply:
        # Preparing a commit needs no write access to the branch: only the commit (or the LFS batch) does
        repo = self.hub.writable(repo_id, self._token(), branch=None)
        return _Reply.json(self.hub.preupload(repo, revision, self._json_body(body)))

    def _commit(self, repo_id: str, revision: str, split: Any, body: bytes) -> _Reply:
        create_pr = (parse_qs(split.query).get("create_pr") or ["0"])[0] == "1"
        token = self._token()
        repo = self.hub.writable(repo_id, token, branch=None if create_pr else revision)
        assert token is not None
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError as error:
            raise HubError(400, f"Invalid ndjson payload: {error}") from error
        return _Reply.json(self.hub.commit(repo, revision, lines, token=token, create_pr=create_pr))

    def _commits(self, repo_id: str, revision: str, split: Any, body: bytes) -> _Reply:
        repo = self.hub.readable(repo_id, self._token())
        if repo.commit(revision) is None:
            raise _revision_not_found(revision)
        return _Reply.json(
            [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.description,
                    "authors": [{"user": c.author, "avatar": ""}],
                    "date": c.date,
                }
                for c in repo.history(revision)
            ]
        )

    def _refs(self, repo_id: str, split: Any, body: bytes) -> _Reply:
        repo = self.hub.readable(repo_id, self._token())
        include_prs = (parse_qs(split.query).get("include_prs") or ["0"])[0] in ("1", "true", "True")
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(repo.refs.items())
            if not name.startswith("refs/")
        ]
        answer: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if include_prs:
            answer["pullRequests"] = [
                {"name": str(pr.num), "ref": pr.ref, "targetCommit": repo.refs[pr.ref]} for pr in repo.pull_requests
            ]
        return _Reply.json(answer)

    def _discussion_summary(self, repo: FakeRepo, d: Discussion) -> dict[str, Any]:
        return {
            "num": d.num,
            "title": d.title,
            "status": d.status,
            "createdAt": d.created_at,
            "isPullRequest": d.is_pull_request,
            "author": {"name": d.author, "type": "user", "isPro": False},
            "repo": {"name": repo.repo_id, "type": "model"},
            "numComments": 1,
            "pinned": False,
            "topReactions": [],
        }

    def _discussions(self, repo_id: str, split: Any, body: bytes) -> _Reply:
        repo = self.hub.readable(repo_id, self._token())
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        selected = sorted(repo.discussions, key=lambda d: -d.num)
        kind = query.get("type", "all")
        if kind != "all":
            selected = [d for d in selected if d.is_pull_request == (kind == "pull_request")]
        if query.get("status", "all") != "all":
            selected = [d for d in selected if d.status == query["status"]]
        if "author" in query:
            selected = [d for d in selected if d.author == query["author"]]
        page = int(query.get("p", "0"))
        start = page * DISCUSSIONS_PAGE
        shown = selected[start : start + DISCUSSIONS_PAGE]
        return _Reply.json(
            {
                "discussions": [self._discussion_summary(repo, d) for d in shown],
                "count": len(selected),
                "start": start,
                "numClosedDiscussions": sum(d.status != "open" for d in selected),
            }
        )

    def _discussion(self, repo_id: str, num: int, split: Any, body: bytes) -> _Reply:
        repo = self.hub.readable(repo_id, self._token())
        found = [d for d in repo.discussions if d.num == num]
        if not found:
            raise HubError(404, "Discussion not found")
        d = found[0]
        author = {"name": d.author, "type": "user", "isPro": False}
        events: list[dict[str, Any]] = [
            {
                "id": hashlib.sha1(f"{repo_id}#{num}".encode()).hexdigest()[:24],
                "type": "comment",
                "createdAt": d.created_at,
                "author": author,
                "data": {
                    "edited": False,
                    "hidden": False,
                    "latest": {
                        "raw": d.description,
                        "html": d.description,
                        "updatedAt": d.created_at,
                        "author": author,
                    },
                    "numEdits": 0,
                    "editors": [d.author],
                    "reactions": [],
                    "isReport": False,
                },
            }
        ]
        for oid in d.commits:
            events.append(
                {
                    "id": oid[:24],
                    "type": "commit",
                    "createdAt": repo.commits[oid].date,
                    "author": author,
                    "data": {"subject": repo.commits[oid].title, "oid": oid},
                }
            )
        details = self._discussion_summary(repo, d) | {"events": events}
        if d.is_pull_request:
            details["changes"] = {"base": d.base}
            details["filesWithConflicts"] = []
            head = repo.refs[d.ref]
            before = repo.commits[repo.commits[d.commits[0]].parents[0]].tree
            after = repo.commits[head].tree
            details["diff"] = "".join(
                f"diff --git a/{p} b/{p}\n" for p in sorted(set(before) | set(after)) if before.get(p) != after.get(p)
            )
        return _Reply.json(details)

    def _lfs_batch(self, repo_id: str, split: Any, body: bytes) -> _Reply:
        payload = self._json_body(body)
        ref = payload.get("ref")
        branch = str(ref.get("name")) if isinstance(ref, dict) and ref.get("name") else None
        repo = self.hub.writable(repo_id, self._token(), branch=branch)
        if branch is not None and repo.commit(branch) is None:
            raise _revision_not_found(branch)
        return _Reply.json(self.hub.lfs_batch(repo, payload), content_type=_LFS_JSON)

    def _lfs_upload(self, repo_id: str, oid: str, split: Any, body: bytes) -> _Reply:
        self.hub.lfs_upload(repo_id, oid, parse_qs(split.query), body)
        return _Reply(200, b"", headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'}, content_type="text/plain")

    def _lfs_verify(self, repo_id: str, split: Any, body: bytes) -> _Reply:
        repo = self.hub.writable(repo_id, self._token(), branch=None)
        payload = self._json_body(body)
        stored = repo.lfs_objects.get(str(payload.get("oid")))
        if stored is None or _stored_size(stored) != payload.get("size"):
            raise HubError(404, "Object not found", header=False)
        return _Reply.json({"message": "Verified"}, content_type=_LFS_JSON)

    def _resolve(self, repo_id: str, revision: str, filename: str, split: Any, body: bytes) -> _Reply:
        token = self._token()
        repo = self.hub.readable(repo_id, token)
        commit = repo.commit(revision)
        if commit is None:
            raise _revision_not_found(revision)
        if repo.gated and (token is None or token.token not in repo.allowed_tokens):
            message = f"Access to model {repo_id} is restricted and you are not in the authorized list."
            raise HubError(403 if token else 401, message, "GatedRepo", headers={"X-Repo-Commit": commit})
        entry = repo.commits[commit].tree.get(filename)
        if entry is None:
            raise HubError(
                404, f"{filename} does not exist on {revision}", "EntryNotFound", headers={"X-Repo-Commit": commit}
            )
        if entry.data is not None:
            headers = {"ETag": f'"{entry.blob_id}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
            return _Reply(200, entry.data, headers=headers, content_type="application/octet-stream")
        headers = {
            "Location": f"{self.hub.cdn_url}/cdn-lfs/{entry.sha256}",
            "X-Linked-Etag": f'"{entry.sha256}"',
            "X-Linked-Size": str(entry.size),
            "X-Repo-Commit": commit,
            "ETag": f'"{entry.blob_id}"',
        }
        return _Reply(302, b"", headers=headers, content_type="text/plain")

    def _cdn(self, sha: str, split: Any, body: bytes) -> _Reply:
        for repo in list(self.hub.repos.values()):
            stored = repo.lfs_objects.get(sha)
            if stored is not None:
                chunks = [stored] if isinstance(stored, bytes) else stored.chunks()
                headers = {"ETag": f'"{sha}"'}
                return _Reply(200, chunks, headers, "application/octet-stream", length=_stored_size(stored))
        raise HubError(404, "NoSuchKey", header=False)


def point_client_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> None:
    """Make huggingface_hub talk to ``endpoint`` only, with a cache, token file and home under ``home``.

    huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HUB_DISABLE_XET``, the cache and token paths and
    the timeouts into ``huggingface_hub.constants`` at import time, so the constants are patched along with the
    environment. Xet is disabled so that uploads use the LFS protocol this fake speaks. The shared HTTP client is
    closed so that the next request builds one that sees ``NO_PROXY``.

    The first request of a process also makes the client fetch ``/api/agent-harnesses`` (agent detection for its
    user agent; no token) and cache it in ``HF_HOME``: the registry is pinned empty here, so that every test sees
    only the requests it makes, whatever ran before it in the process. Clients in other processes fetch it from the
    fake, which answers it.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent, _http

    hf_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the package re-exports a class by that name

    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    patched = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        "HF_HUB_ETAG_TIMEOUT": 10,
        "HF_HUB_DOWNLOAD_TIMEOUT": 10,
    }
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    monkeypatch.setattr(_detect_agent, "_registry", EMPTY_AGENT_REGISTRY)
    _http.close_session()


@contextlib.contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, home: Path, *, write: str, read: str, bob: str) -> Iterator[FakeHub]:
    """A running fake Hub with huggingface_hub pointed at it (``point_client_at``): alice (``write`` and ``read``
    tokens; member of ``org``) and bob (a ``write`` token, ``bob``), no repos. On exit, the fake failed on no request.
    """
    from huggingface_hub.utils import close_session

    fake = FakeHub()
    fake.add_token(write, user="alice", orgs=("org",))
    fake.add_token(read, user="alice", role="read", orgs=("org",))
    fake.add_token(bob, user="bob")
    with fake.running():
        point_client_at(monkeypatch, endpoint=fake.url, home=home)
        yield fake
        close_session()
    assert fake.server_errors == [], "the fake failed on a request"
