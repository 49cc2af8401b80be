"""A local fake of the Hugging Face Hub, speaking the protocol huggingface_hub's ``snapshot_download`` uses.

Endpoints (as huggingface_hub 2.x calls them):

* ``GET /api/models/{repo_id}[/revision/{revision}]``: the model info (``sha``, ``siblings``, ...).
* ``GET /api/models/{repo_id}/tree/{revision}?recursive=...``: the file listing (``type``, ``path``, ``size``,
  ``oid``, ``lfs``); no ``xetHash``, so the client downloads over plain HTTP.
* ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: regular files answer 200 with ``ETag`` (the git blob
  id), ``X-Repo-Commit`` and ``Content-Length``; LFS files answer 302 to a CDN-like origin (``localhost`` rather
  than ``127.0.0.1``) with ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``, as the Hub does.
* ``GET /cdn-lfs/{sha256}``: the LFS bytes.

Errors carry the ``X-Error-Code``/``X-Error-Message`` headers huggingface_hub maps to its exceptions:
``RepoNotFound`` (401 without a token, 404 with one), ``RevisionNotFound`` (404), ``EntryNotFound`` (404),
``GatedRepo`` (401 without a token, 403 with an unapproved one) and an invalid token (401, "Invalid credentials in
Authorization header"). Every request is recorded with its method, path and ``Authorization`` header.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

#: The idle time after which the server drops a kept-alive connection, and the time a test waits for it to stop.
SOCKET_TIMEOUT = 10.0

#: What ``/api/agent-harnesses`` answers: the registry huggingface_hub's agent detection reads, here empty.
EMPTY_AGENT_REGISTRY: dict[str, object] = {"standardEnvVars": [], "harnesses": {}}


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob, which the Hub serves as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_id(repo_id: str, revision: str) -> str:
    """A stable fake 40-hex commit id."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


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
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()


@dataclass
class FakeRepo:
    """A model repo: regular files, LFS files, and the revisions (branches/tags) that point at commits."""

    repo_id: str
    files: dict[str, bytes]
    lfs: dict[str, LfsFile]
    refs: dict[str, str]
    private: bool = False
    gated: bool = False
    #: tokens that may read a private repo, or that accepted a gated repo's terms
    allowed_tokens: set[str] = field(default_factory=set)

    def commit(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.refs.values() else None

    def lfs_sha256(self, name: str) -> str:
        return self.lfs[name].sha256

    def names(self) -> list[str]:
        return sorted([*self.files, *self.lfs])


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    authorization: str | None


class FakeHub:
    """The fake Hub. ``with hub.running(): ...`` serves it on ``hub.url`` (127.0.0.1, an ephemeral port)."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        #: tokens the Hub knows; any other ``Authorization: Bearer`` gets 401 "Invalid credentials"
        self.valid_tokens: set[str] = set()
        self.requests: list[Request] = []
        #: the client's cache folder, set by whoever points a client at this hub
        self.cache: Path | None = None
        self._lock = threading.Lock()
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
        """Serve ``folder``'s files (plus ``files`` and ``lfs``) at every revision in ``revisions``."""
        content = {".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n", "README.md": b"# fake\n"}
        if folder is not None:
            content.update({p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()})
        content.update(files or {})
        repo = FakeRepo(
            repo_id=repo_id,
            files=content,
            lfs=dict(lfs or {}),
            refs={rev: commit_id(repo_id, rev) for rev in revisions},
            private=private,
            gated=gated,
            allowed_tokens=set(allowed_tokens),
        )
        self.repos[repo_id] = repo
        self.valid_tokens.update(allowed_tokens)
        return repo

    # -- what was asked ---------------------------------------------------------------------------------------

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def requested_files(self, repo_id: str) -> set[str]:
        """Filenames asked for under ``/{repo_id}/resolve/{revision}/`` (HEAD or GET)."""
        prefix = f"/{repo_id}/resolve/"
        tails = [p[len(prefix) :] for p in self.paths if p.startswith(prefix)]
        return {tail.split("/", 1)[1] for tail in tails if "/" in tail}

    # -- serving ----------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake hub is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeHub]:
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(SOCKET_TIMEOUT)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        head: bool,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, payload: object, *, head: bool) -> None:
        self._send(200, json.dumps(payload).encode(), head=head)

    def _error(self, status: int, code: str | None, message: str, *, head: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), head=head, headers=headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        return auth.split(" ", 1)[1] if auth and auth.startswith("Bearer ") else None

    # -- routing ----------------------------------------------------------------------------------------------

    def _dispatch(self, *, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        self.hub.record(Request(self.command, path, split.query, self.headers.get("Authorization")))
        token = self._token()
        if self.headers.get("Authorization") is not None and token not in self.hub.valid_tokens:
            return self._error(401, None, "Invalid credentials in Authorization header", head=head)

        if path.startswith("/cdn-lfs/"):
            return self._cdn(path[len("/cdn-lfs/") :], head=head)
        if path == "/api/agent-harnesses":
            return self._json(EMPTY_AGENT_REGISTRY, head=head)
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            if "/tree/" in rest:
                kind, (repo_id, revision) = "tree", rest.split("/tree/", 1)
            elif "/revision/" in rest:
                kind, (repo_id, revision) = "info", rest.split("/revision/", 1)
            else:
                kind, repo_id, revision = "info", rest, "main"
            repo = self._repo(repo_id, token, head=head)
            if repo is None:
                return None
            if kind == "tree":
                revision = revision.split("/", 1)[0]  # a path inside the repo is not served: listings are recursive
            commit = repo.commit(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
            return self._json(self._info(repo, commit) if kind == "info" else self._tree(repo), head=head)
        if "/resolve/" in path:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            return self._resolve(repo_id, revision, filename, token, head=head)
        return self._error(404, None, "Not Found", head=head)

    def _repo(self, repo_id: str, token: str | None, *, head: bool) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.allowed_tokens):
            self._error(404 if token else 401, "RepoNotFound", "Repository not found", head=head)
            return None
        return repo

    # -- endpoints --------------------------------------------------------------------------------------------

    def _info(self, repo: FakeRepo, commit: str) -> dict[str, object]:
        return {
            "_id": commit[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "library_name": "transformers",
            "tags": ["transformers", "longformer"],
            "siblings": [{"rfilename": name} for name in repo.names()],
        }

    def _tree(self, repo: FakeRepo) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = []
        for name in repo.names():
            if name in repo.files:
                data = repo.files[name]
                entries.append({"type": "file", "oid": git_blob_id(data), "size": len(data), "path": name})
            else:
                lfs = repo.lfs[name]
                entries.append(
                    {
                        "type": "file",
                        "oid": git_blob_id(lfs.pointer),
                        "size": lfs.size,
                        "path": name,
                        "lfs": {"oid": repo.lfs_sha256(name), "size": lfs.size, "pointerSize": len(lfs.pointer)},
                    }
                )
        return entries

    def _resolve(self, repo_id: str, revision: str, filename: str, token: str | None, *, head: bool) -> None:
        repo = self._repo(repo_id, token, head=head)
        if repo is None:
            return
        commit = repo.commit(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        if repo.gated and token not in repo.allowed_tokens:
            message = f"Access to model {repo_id} is restricted and you are not in the authorized list."
            return self._error(403 if token else 401, "GatedRepo", message, head=head, commit=commit)
        if filename in repo.files:
            data = repo.files[filename]
            headers = {"ETag": f'"{git_blob_id(data)}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
            return self._send(200, data, head=head, headers=headers, content_type="application/octet-stream")
        if filename in repo.lfs:
            sha = repo.lfs_sha256(filename)
            headers = {
                "Location": f"http://localhost:{self.hub.port}/cdn-lfs/{sha}",
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(repo.lfs[filename].size),
                "X-Repo-Commit": commit,
                "ETag": f'"{git_blob_id(repo.lfs[filename].pointer)}"',
            }
            return self._send(302, b"", head=head, headers=headers, content_type="text/plain")
        return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", head=head, commit=commit)

    def _cdn(self, sha: str, *, head: bool) -> None:
        for repo in self.hub.repos.values():
            for name, lfs in repo.lfs.items():
                if repo.lfs_sha256(name) == sha:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(lfs.size))
                    self.send_header("ETag", f'"{sha}"')
                    self.end_headers()
                    if not head:
                        for part in lfs.chunks():
                            self.wfile.write(part)
                    return
        self._error(404, None, "NoSuchKey", head=head)


def point_client_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> None:
    """Make huggingface_hub talk to ``endpoint`` only, with a cache, token file and home under ``home``.

    huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, the cache and token paths and the timeouts into
    ``huggingface_hub.constants`` at import time, so the constants are patched along with the environment. The
    shared HTTP client is closed so that the next request builds one that sees ``NO_PROXY``.

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
