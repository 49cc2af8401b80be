"""The fake Hub in ``tests/fake_hub.py`` speaks the publishing protocol huggingface_hub uses, proven by the client.

Every test drives the fake through huggingface_hub's public API (``HfApi`` with ``endpoint`` and ``token``,
``hf_hub_download``; a few protocol details the high-level calls never reach go through ``get_session`` and
``huggingface_hub.lfs``) and then reads the fake's server-side view: the files per ref with their bytes and sha256,
the commits and the pull requests. What the client does by itself is asserted as found in huggingface_hub 2.4: which
calls it retries, what ``upload_folder`` returns, and how a repeated identical upload behaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    HFValidationError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.lfs import UploadInfo, post_lfs_batch_info
from huggingface_hub.utils import get_session, hf_raise_for_status
from safetensors.torch import save_file

from .fake_hub import DEFAULT_GITATTRIBUTES, LFS_THRESHOLD, FakeHub, Request, serving

WRITE = "hf_alice_write"
READ = "hf_alice_read"
BOB = "hf_bob_write"
UNKNOWN = "hf_revoked"
REPO = "org/tiny-longformer"

#: ``upload_folder`` of a folder holding a README.md and LFS files, into an existing repo (Xet disabled)
UPLOAD_SEQUENCE = ["validate-yaml", "validate-yaml", "preupload", "lfs-batch", "lfs-upload", "lfs-verify"]


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub: alice (write and read tokens; member of ``org``) and bob (write token), no repos."""
    with serving(monkeypatch, tmp_path / "hf-home", write=WRITE, read=READ, bob=BOB) as fake:
        yield fake


def api(hub: FakeHub, token: str | bool = WRITE) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A model folder as the action writes one: a card, config, safetensors weights (LFS by ``.gitattributes``), a
    text file over the Hub's 10 MiB (LFS by size) in a subfolder, and ``SHA256SUMS`` of every other file."""
    out = tmp_path / "model"
    (out / "extra").mkdir(parents=True)
    (out / "README.md").write_text("---\nlibrary_name: transformers\npipeline_tag: fill-mask\n---\n# Tiny\n")
    (out / "config.json").write_text(json.dumps({"model_type": "longformer", "hidden_size": 32}) + "\n")
    save_file({"weight": torch.arange(64, dtype=torch.float32).reshape(8, 8)}, out / "model.safetensors")
    (out / "extra" / "vocab.txt").write_bytes(b"token\n" * (LFS_THRESHOLD // 6 + 1))
    sums = [
        f"{sha256(p.read_bytes())}  {p.relative_to(out).as_posix()}\n" for p in sorted(out.rglob("*")) if p.is_file()
    ]
    (out / "SHA256SUMS").write_text("".join(sums))
    return out


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sha256sums(folder: Path) -> dict[str, str]:
    """The folder's ``SHA256SUMS`` read as ``sha256sum -c`` reads it, plus the file itself."""
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    return sums | {"SHA256SUMS": sha256((folder / "SHA256SUMS").read_bytes())}


def without_gitattributes(files: dict[str, str]) -> dict[str, str]:
    return {path: value for path, value in files.items() if path != ".gitattributes"}


def commit_lines(request: Request) -> list[dict]:
    return [json.loads(line) for line in request.body.splitlines()]


# -- create_repo --------------------------------------------------------------------------------------------------


def test_create_repo_new_existing_and_private(hub: FakeHub) -> None:
    url = api(hub).create_repo(REPO)

    assert url == f"{hub.url}/{REPO}" and url.repo_id == REPO
    repo = hub.repos[REPO]
    (initial,) = repo.history("main")
    assert (initial.title, initial.author, initial.parents) == ("initial commit", "system", ())
    assert repo.files_at("main") == {".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
    assert not repo.private
    assert json.loads(hub.calls("create-repo")[0].body) == {"name": "tiny-longformer", "organization": "org"}

    with pytest.raises(HfHubHTTPError) as conflict:
        api(hub).create_repo(REPO)
    assert conflict.value.response.status_code == 409
    assert "You already created this model repo" in str(conflict.value)

    assert api(hub).create_repo(REPO, exist_ok=True) == url
    assert [r.status for r in hub.calls("create-repo")] == [200, 409, 409], "exist_ok swallows the Hub's 409"
    assert repo.history("main") == [initial], "nothing was created twice"

    private = api(hub).create_repo("alice/private", private=True)
    assert hub.repos["alice/private"].private
    assert json.loads(hub.calls("create-repo")[-1].body)["visibility"] == "private"
    assert api(hub).repo_info("alice/private").private is True
    with pytest.raises(RepositoryNotFoundError):
        api(hub, False).repo_info(private.repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api(hub, BOB).repo_info(private.repo_id)


def test_create_repo_without_a_namespace_uses_the_token_user(hub: FakeHub) -> None:
    assert api(hub).create_repo("bare-name").repo_id == "alice/bare-name"


@pytest.mark.parametrize(
    ("token", "repo_id", "status", "message"),
    [
        (False, REPO, 401, "Invalid username or password."),
        (UNKNOWN, REPO, 401, "Invalid credentials in Authorization header"),
        (READ, REPO, 403, 'You don\'t have the rights to create a model under the namespace "org"'),
        (WRITE, "bob/model", 403, 'You don\'t have the rights to create a model under the namespace "bob"'),
        (WRITE, "nobody/model", 403, 'You don\'t have the rights to create a model under the namespace "nobody"'),
    ],
    ids=["anonymous", "unknown-token", "read-token", "other-users-namespace", "unknown-namespace"],
)
def test_create_repo_refusals(hub: FakeHub, token: str | bool, repo_id: str, status: int, message: str) -> None:
    with pytest.raises(HfHubHTTPError) as refused:
        api(hub, token).create_repo(repo_id)

    assert refused.value.response.status_code == status
    assert refused.value.response.headers.get("X-Error-Message", message) == message
    assert message in str(refused.value)
    assert repo_id not in hub.repos


def test_create_repo_exist_ok_with_a_read_token_falls_back_to_repo_info(hub: FakeHub) -> None:
    api(hub).create_repo(REPO)

    assert api(hub, READ).create_repo(REPO, exist_ok=True).repo_id == REPO
    assert hub.endpoints[-2:] == ["create-repo", "repo-info"]
    with pytest.raises(HfHubHTTPError) as refused:
        api(hub, READ).create_repo("org/other", exist_ok=True)
    assert refused.value.response.status_code == 403, "the repo_info fallback finds nothing: the 403 stands"


def test_invalid_repo_names_are_refused_by_the_client_and_by_the_hub(hub: FakeHub) -> None:
    with pytest.raises(HFValidationError):
        api(hub).create_repo("org/bad--name")
    assert hub.requests == [], "huggingface_hub validates repo ids before any request"

    # a client that skips that validation meets the Hub's own rule
    response = get_session().post(
        f"{hub.url}/api/repos/create",
        json={"name": "-leading-dash", "organization": "org"},
        headers={"Authorization": f"Bearer {WRITE}"},
    )
    with pytest.raises(BadRequestError) as refused:
        hf_raise_for_status(response)
    assert "cannot start or end with '-' or '.'" in str(refused.value)
    assert "org/-leading-dash" not in hub.repos


# -- upload_folder ------------------------------------------------------------------------------------------------


def test_upload_folder_as_a_pull_request(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    hub.requests.clear()

    info = api(hub).upload_folder(
        repo_id=REPO,
        folder_path=folder,
        commit_message="Add the model",
        commit_description="From ckpt abc",
        create_pr=True,
    )

    repo = hub.repos[REPO]
    head = repo.refs["refs/pr/1"]
    assert info.pr_url == f"{hub.url}/{REPO}/discussions/1"
    assert (info.pr_num, info.pr_revision, info.oid) == (1, "refs/pr/1", head)
    assert info.commit_url == f"{hub.url}/{REPO}/commit/{head}"
    assert (info.commit_message, info.commit_description) == ("Add the model", "From ckpt abc")
    assert info.repo_url.repo_id == REPO

    # the files that arrived are the folder, byte for byte; main is untouched until the pull request is merged
    assert without_gitattributes(repo.sha256sums("refs/pr/1")) == sha256sums(folder)
    assert {p: d for p, d in repo.files_at("refs/pr/1").items() if p != ".gitattributes"} == local_files(folder)
    assert repo.files_at("main") == {".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
    commit = repo.commits[head]
    assert (commit.title, commit.description, commit.parents) == (
        "Add the model",
        "From ckpt abc",
        (repo.refs["main"],),
    )
    (pr,) = repo.pull_requests
    assert (pr.num, pr.title, pr.description, pr.author, pr.status) == (
        1,
        "Add the model",
        "From ckpt abc",
        "alice",
        "open",
    )
    assert (pr.ref, pr.base, pr.commits) == ("refs/pr/1", "refs/heads/main", [head])

    # LFS: the weights by .gitattributes, the large text file by size; the Hub adds the latter to .gitattributes
    tree = repo.tree("refs/pr/1")
    assert {p for p, e in tree.items() if e.lfs} == {"model.safetensors", "extra/vocab.txt"}
    assert (
        repo.read(".gitattributes", "refs/pr/1")
        == (DEFAULT_GITATTRIBUTES + "extra/vocab.txt filter=lfs diff=lfs merge=lfs -text\n").encode()
    )

    # the requests, in order: two LFS objects are uploaded in parallel, each PUT then verified
    endpoints = hub.endpoints
    assert endpoints[:4] == UPLOAD_SEQUENCE[:4] and endpoints[-1] == "commit"
    assert sorted(endpoints[4:-1]) == ["lfs-upload"] * 2 + ["lfs-verify"] * 2
    (preupload,) = hub.calls("preupload")
    assert preupload.path == f"/api/models/{REPO}/preupload/main" and preupload.query == "create_pr=1"
    assert "ref" not in json.loads(hub.calls("lfs-batch")[0].body), "a pull request asks for no branch"
    (commit_request,) = hub.calls("commit")
    assert commit_request.query == "create_pr=1"
    lines = commit_lines(commit_request)
    assert lines[0] == {"key": "header", "value": {"summary": "Add the model", "description": "From ckpt abc"}}
    assert {line["key"] for line in lines[1:]} == {"file", "lfsFile"}
    assert sorted(line["value"]["path"] for line in lines if line["key"] == "lfsFile") == [
        "extra/vocab.txt",
        "model.safetensors",
    ]

    # the token went only to the Hub, only in the Authorization header; LFS bytes went to the storage origin bare
    assert hub.token_leaks(WRITE) == []
    uploads = hub.calls("lfs-upload")
    assert uploads and all(r.authorization is None for r in uploads)
    assert all({k.lower(): v for k, v in r.headers}["host"].startswith("localhost:") for r in uploads)
    assert all(r.authorization == f"Bearer {WRITE}" for r in hub.requests if r.endpoint != "lfs-upload")


def test_upload_folder_to_main_then_the_same_folder_again(
    hub: FakeHub, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api(hub).create_repo(REPO)

    first = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add the model")

    repo = hub.repos[REPO]
    assert first.oid == repo.refs["main"] and (first.pr_url, first.pr_num, first.pr_revision) == (None, None, None)
    assert [c.title for c in repo.history("main")] == ["Add the model", "initial commit"]
    assert without_gitattributes(repo.sha256sums("main")) == sha256sums(folder)
    assert json.loads(hub.calls("lfs-batch")[0].body)["ref"] == {"name": "main"}
    assert not repo.pull_requests
    hub.requests.clear()

    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        again = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add the model")

    # huggingface_hub compares each file with the oid the preupload answers and commits nothing: it returns the
    # head's commit, and says so only in a log warning. The LFS batch is still asked (its objects need no upload).
    assert again.oid == first.oid and again.commit_url == first.commit_url and again.pr_url is None
    assert [c.title for c in repo.history("main")] == ["Add the model", "initial commit"]
    assert hub.endpoints == ["validate-yaml", "validate-yaml", "preupload", "lfs-batch", "repo-info"]
    assert all("actions" not in o for o in json.loads(hub.calls("lfs-batch")[0].body)["objects"])
    assert "No files have been modified since last commit. Skipping to prevent empty commit." in caplog.text

    # one changed file: only it is committed
    (folder / "config.json").write_text(json.dumps({"model_type": "longformer", "hidden_size": 64}) + "\n")
    hub.requests.clear()
    third = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Update config")
    (commit_request,) = hub.calls("commit")
    assert [line["value"]["path"] for line in commit_lines(commit_request)[1:]] == ["config.json"]
    assert third.oid == repo.refs["main"] != first.oid
    assert "lfs-upload" not in hub.endpoints


def test_a_pull_request_pushed_twice(hub: FakeHub, folder: Path) -> None:
    """The client compares with the base branch, not with open pull requests: the same folder opens a second one;
    once main holds the files, the same push opens none and returns main's head without a pull request."""
    api(hub).create_repo(REPO)
    first = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)

    second = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)

    repo = hub.repos[REPO]
    assert (first.pr_num, second.pr_num) == (1, 2)
    assert repo.tree("refs/pr/1") == repo.tree("refs/pr/2")
    assert "lfs-upload" not in hub.endpoints[hub.endpoints.index("commit") + 1 :], "the objects were stored once"

    api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")
    third = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)

    assert third.pr_url is None and third.pr_num is None and third.oid == repo.refs["main"]
    assert len(repo.pull_requests) == 2


def test_every_file_downloads_byte_identical_at_main_and_at_the_pull_request(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)
    api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")
    repo = hub.repos[REPO]

    for revision in ("refs/pr/1", "main"):
        for name, data in local_files(folder).items():
            path = Path(hf_hub_download(REPO, name, revision=revision, token=WRITE))
            assert path.read_bytes() == data, (revision, name)
            assert repo.commit(revision) in path.parts, "the snapshot is the revision's commit"

    resolved = hub.calls("resolve")
    assert any("/resolve/refs/pr/1/" in r.path for r in resolved), "the ref travels URL-encoded, one path segment"
    assert hub.calls("cdn") and all(r.authorization is None for r in hub.calls("cdn"))
    assert hub.token_leaks(WRITE) == []


# -- discussions, refs, listings ----------------------------------------------------------------------------------


def test_the_pull_request_is_listed_with_its_ref(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    info = api(hub).upload_folder(
        repo_id=REPO,
        folder_path=folder,
        commit_message="Add the model",
        commit_description="Provenance",
        create_pr=True,
    )

    (pr,) = api(hub, False).get_repo_discussions(REPO)
    assert (pr.num, pr.title, pr.status, pr.author, pr.is_pull_request) == (1, "Add the model", "open", "alice", True)
    assert pr.git_reference == "refs/pr/1" and pr.url == info.pr_url
    assert list(api(hub).get_repo_discussions(REPO, discussion_type="discussion")) == []
    assert [d.num for d in api(hub).get_repo_discussions(REPO, discussion_type="pull_request", author="alice")] == [1]

    details = api(hub).get_discussion_details(REPO, 1)
    assert details.target_branch == "refs/heads/main" and details.conflicting_files == []
    comment, commit = details.events
    assert comment.content == "Provenance"
    assert (commit.summary, commit.oid) == ("Add the model", info.oid)

    refs = api(hub).list_repo_refs(REPO, include_pull_requests=True)
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [
        ("main", "refs/heads/main", hub.repos[REPO].refs["main"])
    ]
    assert [(p.ref, p.target_commit) for p in refs.pull_requests] == [("refs/pr/1", info.oid)]
    assert refs.tags == [] and refs.converts == []
    assert api(hub).list_repo_refs(REPO).pull_requests is None
    assert hub.calls("refs")[-1].query == ""


def test_discussions_are_paginated(hub: FakeHub) -> None:
    api(hub).create_repo(REPO)
    for n in range(51):
        operation = CommitOperationAdd(path_in_repo="note.txt", path_or_fileobj=f"{n}\n".encode())
        api(hub).create_commit(REPO, [operation], commit_message=f"PR {n}", create_pr=True)

    discussions = list(api(hub).get_repo_discussions(REPO))

    assert [d.num for d in discussions] == list(range(51, 0, -1))
    assert [r.query for r in hub.calls("discussions")] == ["p=0", "p=1"]


def test_listings_at_any_revision(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    info = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)
    expected = sorted([".gitattributes", *local_files(folder)])

    assert sorted(api(hub).list_repo_files(REPO, revision="refs/pr/1")) == expected
    assert api(hub).list_repo_files(REPO) == [".gitattributes"]
    top = {(type(e).__name__, e.path) for e in api(hub).list_repo_tree(REPO, revision="refs/pr/1")}
    assert ("RepoFolder", "extra") in top and ("RepoFile", "extra/vocab.txt") not in top
    vocab, config = api(hub).get_paths_info(REPO, ["extra/vocab.txt", "config.json", "missing"], revision=info.oid)
    assert vocab.lfs is not None and vocab.lfs.sha256 == sha256((folder / "extra" / "vocab.txt").read_bytes())
    assert config.lfs is None and config.size == (folder / "config.json").stat().st_size
    assert api(hub).repo_info(REPO, revision="refs/pr/1").sha == info.oid
    assert f"/api/models/{REPO}/revision/refs/pr/1" in hub.paths, (
        "the client encodes the ref; paths are recorded decoded"
    )
    assert [c.title for c in api(hub).list_repo_commits(REPO, revision="refs/pr/1")] == ["Add", "initial commit"]


def test_whoami_names_the_token_role(hub: FakeHub) -> None:
    assert api(hub).whoami()["auth"]["accessToken"]["role"] == "write"
    assert api(hub, READ).whoami()["auth"]["accessToken"]["role"] == "read"
    assert [org["name"] for org in api(hub).whoami()["orgs"]] == ["org"]
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        api(hub, UNKNOWN).whoami()


# -- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "create_pr", "status", "message", "endpoint"),
    [
        (False, False, 401, "Invalid username or password.", "preupload"),
        (UNKNOWN, False, 401, "Invalid credentials in Authorization header", "validate-yaml"),
        (READ, False, 403, "Authorization error.", "preupload"),
        (READ, True, 403, "Authorization error.", "preupload"),
        (BOB, False, 403, "Forbidden: pass `create_pr=1` as a query parameter to create a Pull Request.", "lfs-batch"),
    ],
    ids=["anonymous", "unknown-token", "read-token", "read-token-pr", "not-a-member"],
)
def test_upload_refusals_are_hf_hub_http_errors(
    hub: FakeHub, folder: Path, token: str | bool, create_pr: bool, status: int, message: str, endpoint: str
) -> None:
    api(hub).create_repo(REPO)
    head = hub.repos[REPO].refs["main"]
    hub.requests.clear()

    with pytest.raises(HfHubHTTPError) as refused:
        api(hub, token).upload_folder(repo_id=REPO, folder_path=folder, create_pr=create_pr)

    assert refused.value.response.status_code == status
    assert refused.value.server_message == message
    assert hub.endpoints[-1] == endpoint
    assert hub.repos[REPO].refs == {"main": head} and not hub.repos[REPO].pull_requests


def test_a_commit_without_lfs_files_by_a_non_member_is_refused_at_the_commit(hub: FakeHub) -> None:
    api(hub).create_repo(REPO)
    operation = CommitOperationAdd(path_in_repo="notes.md", path_or_fileobj=b"hello\n")

    with pytest.raises(HfHubHTTPError) as refused:
        api(hub, BOB).create_commit(REPO, [operation], commit_message="Edit")

    assert refused.value.response.status_code == 403
    assert hub.endpoints == ["create-repo", "preupload", "commit"], "preparing a commit needs no write access"


def test_anyone_with_a_write_token_may_open_a_pull_request_on_a_public_repo(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    api(hub).create_repo("org/hidden", private=True)

    info = api(hub, BOB).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Proposal", create_pr=True)

    assert info.pr_num == 1 and hub.repos[REPO].pull_requests[0].author == "bob"
    with pytest.raises(RepositoryNotFoundError):
        api(hub, BOB).upload_folder(repo_id="org/hidden", folder_path=folder, create_pr=True)


def test_not_found_errors(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)

    with pytest.raises(RepositoryNotFoundError) as missing_repo:
        api(hub).upload_folder(repo_id="org/missing", folder_path=folder)
    assert missing_repo.value.response.status_code == 404
    assert "Note: Creating a commit assumes that the repo already exists" in str(missing_repo.value)
    with pytest.raises(RevisionNotFoundError):
        api(hub).upload_folder(repo_id=REPO, folder_path=folder, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api(hub).repo_info(REPO, revision="refs/pr/7")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "config.json", token=WRITE)
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        api(hub, False).repo_info("org/missing")
    assert anonymous.value.response.status_code == 401


def test_a_401_maps_to_repository_not_found_only_on_https(hub: FakeHub, folder: Path) -> None:
    """huggingface_hub reads a 401 without ``X-Error-Code`` on ``/api/models/...`` as RepositoryNotFoundError only
    when the URL is ``https://`` (``REPO_API_REGEX``): the same answer from this ``http://`` fake is a plain
    HfHubHTTPError. The status code is what both share."""
    api(hub).create_repo(REPO)
    with pytest.raises(HfHubHTTPError) as plain:
        api(hub, False).upload_folder(repo_id=REPO, folder_path=folder)
    assert type(plain.value) is HfHubHTTPError and plain.value.response.status_code == 401

    answer = plain.value.response
    url = str(answer.request.url).replace(hub.url, "https://huggingface.co")
    as_on_the_hub = httpx2.Response(
        answer.status_code, headers=answer.headers, content=answer.content, request=httpx2.Request("POST", url)
    )
    with pytest.raises(RepositoryNotFoundError) as mapped:
        hf_raise_for_status(as_on_the_hub)
    assert mapped.value.response.status_code == 401 and "Invalid username or password." in str(mapped.value)


# -- the commit protocol ------------------------------------------------------------------------------------------


def test_parent_commit_deletions_and_gitignore(hub: FakeHub, tmp_path: Path) -> None:
    api(hub).create_repo(REPO)
    initial = hub.repos[REPO].refs["main"]
    add = [
        CommitOperationAdd(path_in_repo="a.txt", path_or_fileobj=b"a\n"),
        CommitOperationAdd(path_in_repo="logs/run.log", path_or_fileobj=b"log\n"),
    ]
    first = api(hub).create_commit(REPO, add, commit_message="Add", parent_commit=initial)
    assert first.oid == hub.repos[REPO].refs["main"]

    stale = CommitOperationAdd(path_in_repo="b.txt", path_or_fileobj=b"b\n")
    with pytest.raises(HfHubHTTPError) as race:
        api(hub).create_commit(REPO, [stale], commit_message="Late", parent_commit=initial)
    assert race.value.response.status_code == 412
    assert race.value.server_message == "A commit has happened since. Please refresh and try again."

    api(hub).create_commit(REPO, [CommitOperationDelete("a.txt"), CommitOperationDelete("logs/")], commit_message="Rm")
    assert sorted(hub.repos[REPO].tree("main")) == [".gitattributes"]
    with pytest.raises(RemoteEntryNotFoundError, match="A file with this name doesn't exist"):
        api(hub).create_commit(REPO, [CommitOperationDelete("a.txt")], commit_message="Rm again")

    ignoring = tmp_path / "ignoring"
    ignoring.mkdir()
    (ignoring / ".gitignore").write_text("*.tmp\nscratch/\n")
    (ignoring / "kept.txt").write_text("kept\n")
    (ignoring / "x.tmp").write_text("dropped\n")
    (ignoring / "scratch").mkdir()
    (ignoring / "scratch" / "y.txt").write_text("dropped\n")
    api(hub).upload_folder(repo_id=REPO, folder_path=ignoring, commit_message="Ignore")
    assert sorted(hub.repos[REPO].tree("main")) == [".gitattributes", ".gitignore", "kept.txt"]
    answered = json.loads(hub.calls("preupload")[-1].body)
    assert "*.tmp" in answered["gitIgnore"], "the client sends the .gitignore it commits"


def test_lfs_objects_are_checked(hub: FakeHub) -> None:
    api(hub).create_repo(REPO)
    data = b"\0weights" * 100
    headers = {"Authorization": f"Bearer {WRITE}"}
    actions, errors, transfer = post_lfs_batch_info(
        upload_infos=[UploadInfo.from_bytes(data)], token=None, repo_type="model", repo_id=REPO, headers=headers
    )
    assert errors == [] and transfer == "basic"
    upload = actions[0]["actions"]["upload"]["href"]

    wrong = get_session().put(upload, content=b"\0other!!" * 100)
    assert wrong.status_code == 400
    assert sha256(data) not in hub.repos[REPO].lfs_objects

    dangling = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": sha256(data), "size": len(data)}}
    body = "\n".join(json.dumps(line) for line in [{"key": "header", "value": {"summary": "W"}}, dangling]) + "\n"
    response = get_session().post(
        f"{hub.url}/api/models/{REPO}/commit/main",
        content=body.encode(),
        headers=headers | {"Content-Type": "application/x-ndjson"},
    )
    with pytest.raises(BadRequestError, match="an LFS pointer pointed to a file that does not exist"):
        hf_raise_for_status(response, endpoint_name="commit")

    assert get_session().put(upload, content=data).status_code == 200
    again, _, _ = post_lfs_batch_info(
        upload_infos=[UploadInfo.from_bytes(data)], token=None, repo_type="model", repo_id=REPO, headers=headers
    )
    assert "actions" not in again[0], "a stored object needs no upload"


def test_model_card_metadata_is_validated(hub: FakeHub, tmp_path: Path) -> None:
    api(hub).create_repo(REPO)
    card = tmp_path / "card"
    card.mkdir()

    (card / "README.md").write_text("# No metadata\n")
    with pytest.warns(UserWarning, match="empty or missing yaml metadata in repo card"):
        api(hub).upload_folder(repo_id=REPO, folder_path=card, commit_message="Card")

    (card / "README.md").write_text("---\nlicense: [\n---\n# Broken\n")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api(hub).upload_folder(repo_id=REPO, folder_path=card, commit_message="Card")

    (card / "README.md").write_text("---\nmodel-index:\n- name: tiny\n  results:\n  - task: {}\n---\n")
    with pytest.raises(ValueError, match=r"model-index\[0\]\.results\[0\]\.task\.type"):
        api(hub).upload_folder(repo_id=REPO, folder_path=card, commit_message="Card")

    index = {
        "name": "tiny",
        "results": [
            {
                "task": {"type": "fill-mask"},
                "dataset": {"type": "wikitext", "name": "WikiText"},
                "metrics": [{"type": "loss", "value": 1.5}],
            }
        ],
    }
    (card / "README.md").write_text("---\n" + json.dumps({"model-index": [index]}) + "\n---\n# Card\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api(hub).upload_folder(repo_id=REPO, folder_path=card, commit_message="Card")
    assert hub.repos[REPO].read("README.md").startswith(b"---\n{")
    assert [r.status for r in hub.calls("validate-yaml")] == [200, 200, 400, 400, 200, 200]


# -- faults and what huggingface_hub retries ----------------------------------------------------------------------


class _Clock:
    """huggingface_hub's ``time`` module as its retry loop sees it: ``sleep`` records the wait instead of waiting."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds huggingface_hub's ``http_backoff`` chose to wait between tries (recorded, not waited)."""
    from huggingface_hub.utils import _http

    clock = _Clock()
    monkeypatch.setattr(_http, "time", clock)
    return clock.slept


def test_a_500_on_the_preupload_is_retried_by_huggingface_hub(
    hub: FakeHub, folder: Path, caplog: pytest.LogCaptureFixture, waits: list[float]
) -> None:
    api(hub).create_repo(REPO)
    hub.inject("preupload", 500)

    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        info = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")

    assert [r.status for r in hub.calls("preupload")] == [500, 200]
    assert info.oid == hub.repos[REPO].refs["main"]
    assert "HTTP Error 500 thrown while requesting POST" in caplog.text and "Retrying in 1s [Retry 1/5]" in caplog.text
    assert waits == [1]


def test_a_429_on_the_lfs_batch_waits_retry_after(
    hub: FakeHub, folder: Path, caplog: pytest.LogCaptureFixture, waits: list[float]
) -> None:
    api(hub).create_repo(REPO)
    hub.inject("lfs-batch", 429, retry_after=0)

    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")

    assert [r.status for r in hub.calls("lfs-batch")] == [429, 200]
    assert "Rate limited. Waiting 1.0s before retry [Retry 1/5]." in caplog.text, "Retry-After + 1 s"
    assert waits == [1.0]


def test_a_dropped_lfs_upload_is_retried(hub: FakeHub, folder: Path, waits: list[float]) -> None:
    api(hub).create_repo(REPO)
    hub.inject("lfs-upload", drop=True)

    api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")

    assert [r.status for r in hub.calls("lfs-upload")].count(0) == 1 and len(hub.calls("lfs-upload")) == 3
    assert waits == [1], "one dropped connection, one wait of the first backoff step"
    assert without_gitattributes(hub.repos[REPO].sha256sums()) == sha256sums(folder)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_failed_commit_is_not_retried_by_huggingface_hub(hub: FakeHub, folder: Path, status: int) -> None:
    api(hub).create_repo(REPO)
    initial = hub.repos[REPO].refs["main"]
    hub.inject("commit", status, retry_after=0)

    with pytest.raises(HfHubHTTPError) as failed:
        api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)

    assert failed.value.response.status_code == status
    assert len(hub.calls("commit")) == 1 and hub.repos[REPO].refs == {"main": initial}
    info = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)
    assert info.pr_num == 1, "the caller's own retry opens the pull request; the LFS objects are already stored"
    assert len(hub.calls("lfs-upload")) == 2


@pytest.mark.parametrize(("endpoint", "call"), [("create-repo", "create_repo"), ("repo-info", "repo_info")])
def test_create_repo_and_repo_info_are_not_retried(hub: FakeHub, endpoint: str, call: str) -> None:
    if call == "repo_info":
        api(hub).create_repo(REPO)
    hub.inject(endpoint, 503)

    with pytest.raises(HfHubHTTPError) as failed:
        getattr(api(hub), call)(REPO)

    assert failed.value.response.status_code == 503 and len(hub.calls(endpoint)) == 1


def test_a_lost_commit_response_is_a_transport_error_after_the_commit(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    hub.inject("commit", drop=True, after_handling=True)

    with pytest.raises(httpx2.RemoteProtocolError):
        api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")

    repo = hub.repos[REPO]
    assert [c.title for c in repo.history()] == ["Add", "initial commit"], "the commit happened all the same"
    again = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add")
    assert again.oid == repo.refs["main"] and len(repo.history()) == 2, "pushing again finds nothing to commit"


def test_injected_faults_are_spent_then_the_hub_recovers(hub: FakeHub) -> None:
    hub.inject("create-repo", 502, times=2)
    with pytest.raises(ValueError, match="unknown endpoint"):
        hub.inject("create_repo", 500)

    for _ in range(2):
        with pytest.raises(HfHubHTTPError):
            api(hub).create_repo(REPO)
    api(hub).create_repo(REPO)

    assert [r.status for r in hub.calls("create-repo")] == [502, 502, 200]


def test_a_500_after_the_commit_took_effect_makes_a_retried_pull_request_a_duplicate(
    hub: FakeHub, folder: Path
) -> None:
    """An ambiguous failure: the Hub made the commit and answered 500. Retrying a branch push finds nothing to
    commit; retrying a pull request opens a second one, since files are compared with the base branch."""
    api(hub).create_repo(REPO)
    hub.inject("commit", 500, after_handling=True)

    with pytest.raises(HfHubHTTPError):
        api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)
    retried = api(hub).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Add", create_pr=True)

    repo = hub.repos[REPO]
    assert retried.pr_num == 2 and [pr.num for pr in repo.pull_requests] == [1, 2]
    assert repo.tree("refs/pr/1") == repo.tree("refs/pr/2")


def test_pushing_onto_an_open_pull_request(hub: FakeHub, folder: Path) -> None:
    api(hub).create_repo(REPO)
    opened = api(hub, BOB).upload_folder(repo_id=REPO, folder_path=folder, commit_message="Propose", create_pr=True)
    main = hub.repos[REPO].refs["main"]

    (folder / "config.json").write_text("{}\n")
    pushed = api(hub, BOB).upload_folder(
        repo_id=REPO, folder_path=folder, commit_message="Fix config", revision=opened.pr_revision
    )

    repo = hub.repos[REPO]
    (pr,) = repo.pull_requests
    assert pr.commits == [opened.oid, pushed.oid] and repo.refs["refs/pr/1"] == pushed.oid
    assert repo.commits[pushed.oid].parents == (opened.oid,) and repo.refs["main"] == main
    assert repo.read("config.json", "refs/pr/1") == b"{}\n"
    assert [e.oid for e in api(hub).get_discussion_details(REPO, 1).events[1:]] == [opened.oid, pushed.oid]
    assert json.loads(hub.calls("lfs-batch")[-1].body)["ref"] == {"name": "refs/pr/1"}

    hub.add_token("hf_carol", user="carol")
    with pytest.raises(HfHubHTTPError) as refused:
        api(hub, "hf_carol").upload_folder(repo_id=REPO, folder_path=folder, revision="refs/pr/1")
    assert refused.value.response.status_code == 403, "only the author (or the repo's members) push to a PR"


def test_the_lfs_threshold_can_be_lowered(hub: FakeHub, tmp_path: Path) -> None:
    api(hub).create_repo(REPO)
    small = tmp_path / "small"
    small.mkdir()
    (small / "notes.txt").write_text("n" * 2048)
    (small / "tiny.txt").write_text("t" * 100)
    hub.lfs_threshold = 1024

    api(hub).upload_folder(repo_id=REPO, folder_path=small, commit_message="Small")

    tree = hub.repos[REPO].tree()
    assert tree["notes.txt"].lfs and not tree["tiny.txt"].lfs
    assert hub.repos[REPO].read(".gitattributes").endswith(b"notes.txt filter=lfs diff=lfs merge=lfs -text\n")


def test_token_leak_detectors_find_a_token_in_a_request_or_on_the_hub(hub: FakeHub) -> None:
    api(hub).create_repo(REPO)
    assert hub.token_leaks(WRITE) == [] and hub.stored_leaks(WRITE) == []

    get_session().get(f"{hub.url}/api/models/{REPO}", params={"token": WRITE})
    note = CommitOperationAdd(path_in_repo="notes.md", path_or_fileobj=f"token {WRITE}\n".encode())
    api(hub).create_commit(REPO, [note], commit_message="Notes", commit_description=f"with {WRITE}", create_pr=True)

    assert [r.endpoint for r in hub.token_leaks(WRITE)] == ["repo-info", "commit"]
    head = hub.repos[REPO].refs["refs/pr/1"]
    assert hub.stored_leaks(WRITE) == [f"{REPO}@refs/pr/1:notes.md", f"{REPO} commit {head}", f"{REPO}#1"]
