"""Pushing a checked folder to the Hub (``publishing/hub.py``), against the fake Hub of ``tests/fake_hub.py``.

The folders are real: each task's Trainer checkpoint (``task_checkpoints``) converted and checked by the CLI. The
Hub is the fake, which speaks huggingface_hub's publishing protocol; every assertion on what arrived reads the
fake's server-side view of the repository.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longformer_action.errors import PushError
from longformer_action.progress import Progress
from longformer_action.publishing.checked import TITLE_LIMIT, commit_message, verify_folder
from longformer_action.publishing.hub import PushResult, push_folder
from longformer_action.registry.files import CHECKSUMS_NAME, REPORT_NAME

from .fake_hub import FakeHub, serving

WRITE = "hf_alice_write_Zq81xY"
READ = "hf_alice_read_Pl02mN"
BOB = "hf_bob_write_Kd77sT"
UNKNOWN = "hf_revoked_Qa55wE"


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub: alice (write and read tokens; member of ``org``) and bob (write token), no repos."""
    for name in ("GITHUB_ACTIONS", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_SHA"):
        monkeypatch.delenv(name, raising=False)
    with serving(monkeypatch, tmp_path / "hf-home", write=WRITE, read=READ, bob=BOB) as fake:
        yield fake
    for token in (WRITE, READ, BOB, UNKNOWN):
        assert fake.token_leaks(token) == [], "a token travelled outside the Authorization header"
        assert fake.stored_leaks(token) == [], "a token was stored on the Hub"


class Pusher:
    """``push_folder`` with a log, a record of the waits, and the token in no output."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.log = io.StringIO()
        self.sleeps: list[float] = []

    def __call__(self, folder: Path, repo_id: str = "org/tiny", *, token: str | None = WRITE, **options: Any):
        try:
            return push_folder(
                folder,
                repo_id,
                token=token,
                endpoint=self.hub.url,
                progress=Progress(self.log),
                sleep=self.sleeps.append,
                **options,
            )
        except PushError as error:
            assert "\n" not in str(error), "one line"
            for secret in (WRITE, READ, BOB, UNKNOWN):
                assert secret not in str(error)
            raise
        finally:
            for secret in (WRITE, READ, BOB, UNKNOWN):
                assert secret not in self.log.getvalue()

    @property
    def lines(self) -> list[str]:
        return self.log.getvalue().splitlines()


@pytest.fixture()
def push(hub: FakeHub) -> Pusher:
    return Pusher(hub)


def listed(folder: Path) -> dict[str, str]:
    """The folder's ``SHA256SUMS`` as ``sha256sum -c`` reads it, plus the file itself."""
    lines = (folder / CHECKSUMS_NAME).read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    return sums | {CHECKSUMS_NAME: hashlib.sha256((folder / CHECKSUMS_NAME).read_bytes()).hexdigest()}


def arrived(hub: FakeHub, repo_id: str, revision: str) -> dict[str, str]:
    """Every file's sha256 at ``revision`` on the Hub, but the Hub's own ``.gitattributes``."""
    return {p: d for p, d in hub.repos[repo_id].sha256sums(revision).items() if p != ".gitattributes"}


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def rewrite_sums(folder: Path) -> None:
    from longformer_action.writing.checksums import write_checksums

    write_checksums(folder)


# -- what arrives ---------------------------------------------------------------------------------------------------


def test_every_task_folder_arrives_byte_identical_in_a_pull_request(
    hub: FakeHub, push: Pusher, converted_folders
) -> None:
    for task, folder in converted_folders.items():
        repo_id = f"org/{task}"
        result = push(folder, repo_id)

        repo = hub.repos[repo_id]
        assert isinstance(result, PushResult) and result.repo_created and result.new_commit
        assert (result.pr_num, result.pr_url) == (1, f"{hub.url}/{repo_id}/discussions/1"), "a pull request by default"
        assert arrived(hub, repo_id, "refs/pr/1") == listed(folder), task
        on_hub = {path: data for path, data in repo.files_at("refs/pr/1").items() if path != ".gitattributes"}
        assert on_hub == {p.name: p.read_bytes() for p in folder.iterdir()}, "byte for byte"
        assert repo.names("main") == [".gitattributes"], "main is untouched until the pull request is merged"
        assert result.commit_oid == repo.refs["refs/pr/1"] and result.commit_url.endswith(result.commit_oid)
        assert (result.files, result.size) == (len(listed(folder)), sum(p.stat().st_size for p in folder.iterdir()))

        report = json.loads((folder / REPORT_NAME).read_text())
        commit = repo.commits[result.commit_oid]
        pr = repo.pull_requests[0]
        assert (pr.title, pr.description, pr.author) == (commit.title, commit.description, "alice")
        assert commit.title == f"Upload {report['architecture']} converted from {task}.ckpt (check passed)"
        for fact in (
            f"source checkpoint: `{task}.ckpt`",
            f"source SHA-256: `{report['source']['sha256']}`",
            f"task: `{task}` (`{report['architecture']}`)",
            f"max abs diff {report['check']['max_abs_diff']:.3g} (tolerance {report['check']['atol']:.3g}",
            f"{report['check']['tensors_compared']} tensors equal to the checkpoint's",
            f"tool: longformer-convert {report['tool']['version']}",
        ):
            assert fact in commit.description, (task, fact)
        for named in report["check"]["checks"]:
            verdict = "not run" if named["passed"] is None else "passed"
            assert f"{named['name']}: {verdict}" in commit.description
        assert str(folder.parent) not in commit.description, "no machine path"
        assert "workflow run" not in commit.description, "outside GitHub Actions"
    assert f"push: opened pull request #1: {hub.url}/org/fill-mask/discussions/1" in push.lines


def test_the_pushed_pull_request_downloads_and_loads_in_transformers(
    hub: FakeHub, push: Pusher, converted_folders
) -> None:
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    push(converted_folders["text-classification"], "org/classifier")
    local = Path(snapshot_download("org/classifier", revision="refs/pr/1", token=WRITE, endpoint=hub.url))

    assert {p.name: p.read_bytes() for p in local.iterdir() if p.is_file()} == {
        p.name: p.read_bytes() for p in converted_folders["text-classification"].iterdir()
    } | {".gitattributes": (local / ".gitattributes").read_bytes()}
    model = AutoModelForSequenceClassification.from_pretrained(local)
    tokenizer = AutoTokenizer.from_pretrained(local)
    assert model(**tokenizer("a long document", return_tensors="pt")).logits.shape == (1, 3)


def test_the_log_says_what_is_uploaded_and_where(hub: FakeHub, push: Pusher, converted_folders) -> None:
    folder = converted_folders["question-answering"]
    size = sum(p.stat().st_size for p in folder.iterdir())
    from longformer_action.progress import human_bytes

    push(folder, "org/qa", create_pr=False)

    assert push.lines[0] == (
        f"push: question-answering: {len(listed(folder))} files, {human_bytes(size)}; the check passed and "
        f"{CHECKSUMS_NAME} verifies"
    )
    assert "push: created public repository org/qa" in push.lines
    assert f"push: uploading {len(listed(folder))} files ({human_bytes(size)}) to org/qa to main" in push.lines
    assert push.lines[-1] == f"push: committed to main: {hub.url}/org/qa/commit/{hub.repos['org/qa'].refs['main']}"


def test_in_github_actions_the_description_links_the_run_and_the_title_can_be_replaced(
    hub: FakeHub, push: Pusher, converted_folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_RUN_ID": "1234567",
        "GITHUB_SHA": "f" * 40,
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    result = push(converted_folders["fill-mask"], "org/mlm", commit_message="Nightly fill-mask model")

    commit = hub.repos["org/mlm"].commits[result.commit_oid]
    assert commit.title == "Nightly fill-mask model" == result.title
    assert f"- workflow run: https://github.com/acme/models/actions/runs/1234567 (commit `{'f' * 40}`)" in (
        commit.description
    )
    assert "source SHA-256" in commit.description, "--commit-message replaces the title only"


def test_a_long_checkpoint_name_keeps_the_title_within_the_hubs_limit(converted_folders, tmp_path: Path) -> None:
    checked = verify_folder(converted_folders["text-classification"])
    long = {**checked.report, "source": {**checked.report["source"], "path": "/x/" + "epoch=3-" * 40 + ".ckpt"}}
    message = commit_message(type(checked)(checked.folder, checked.files, long), environ={})
    assert len(message.title) <= TITLE_LIMIT and message.title.startswith("Upload LongformerForSequence")


def test_private_repositories(hub: FakeHub, push: Pusher, converted_folders) -> None:
    push(converted_folders["token-classification"], "org/private-tagger", private=True)
    assert hub.repos["org/private-tagger"].private
    assert "push: created private repository org/private-tagger" in push.lines

    push(converted_folders["token-classification"], "org/public-tagger", create_pr=False)
    before = len(hub.requests)
    with pytest.raises(PushError) as refused:
        push(converted_folders["multiple-choice"], "org/public-tagger", private=True)
    assert str(refused.value) == (
        "org/public-tagger exists and is public: --private only makes a new repository private. Make it private on "
        f"the Hub ({hub.url}/org/public-tagger/settings) and push again, or drop --private to push to the public "
        "repository."
    )
    assert not hub.repos["org/public-tagger"].private and not hub.repos["org/public-tagger"].pull_requests
    assert hub.endpoints[before:] == ["repo-info"], "refused before any upload"


def test_files_of_an_earlier_upload_that_the_folder_does_not_hold_are_removed(
    hub: FakeHub, push: Pusher, converted_folders
) -> None:
    push(converted_folders["text2text-generation"], "org/model", create_pr=False)
    assert "generation_config.json" in hub.repos["org/model"].names()

    result = push(converted_folders["text-classification"], "org/model")

    assert result.removed == ("generation_config.json",)
    assert arrived(hub, "org/model", "refs/pr/1") == listed(converted_folders["text-classification"])
    assert "push: the commit removes 1 file(s) the folder does not hold: generation_config.json" in push.lines
    description = hub.repos["org/model"].pull_requests[0].description
    assert "- removed (not in the converted folder): `generation_config.json`" in description


# -- pushing again --------------------------------------------------------------------------------------------------


def test_the_same_pull_request_is_not_opened_twice(hub: FakeHub, push: Pusher, converted_folders) -> None:
    first = push(converted_folders["question-answering"], "org/qa")
    again = push(converted_folders["question-answering"], "org/qa")

    repo = hub.repos["org/qa"]
    assert [pr.num for pr in repo.pull_requests] == [1] and len(hub.calls("commit")) == 1
    assert not again.new_commit and not again.repo_created
    assert (again.pr_num, again.pr_url, again.commit_oid) == (1, first.pr_url, first.commit_oid)
    assert again.already == f"already proposed in pull request #1 {first.pr_url}"
    assert push.lines[-1] == "push: no new commit: the folder's files are already proposed in pull request #1 " + (
        first.pr_url or ""
    )


def test_the_same_commit_is_not_made_twice_on_a_branch(hub: FakeHub, push: Pusher, converted_folders) -> None:
    first = push(converted_folders["question-answering"], "org/qa", create_pr=False)
    again = push(converted_folders["question-answering"], "org/qa", create_pr=False)
    as_pr = push(converted_folders["question-answering"], "org/qa")

    repo = hub.repos["org/qa"]
    assert len(repo.history()) == 2 and not repo.pull_requests and len(hub.calls("commit")) == 1
    for result in (again, as_pr):
        assert not result.new_commit and result.commit_oid == first.commit_oid == repo.refs["main"]
        assert result.already == f"already on main at {first.commit_oid}" and result.pr_num is None
    assert push.lines[-1] == f"push: no new commit: the folder's files are already on main at {first.commit_oid}"


def test_a_changed_folder_is_proposed_again(hub: FakeHub, push: Pusher, converted_folders) -> None:
    push(converted_folders["question-answering"], "org/qa")
    second = push(converted_folders["text-classification"], "org/qa")
    assert second.new_commit and second.pr_num == 2


# -- transient failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "status", "retry_after", "what", "waited"),
    [
        ("commit", 500, None, "the commit", 2.0),
        ("commit", 503, None, "the commit", 2.0),
        ("commit", 429, 3, "the commit", 3.0),
        ("create-repo", 502, None, "creating the repository", 2.0),
        ("repo-info", 503, None, "the repository's info", 2.0),
        ("refs", 504, None, "the repository's refs", 2.0),
        ("discussions", 500, None, "the pull requests", 2.0),
    ],
)
def test_a_transient_failure_is_retried_and_logged(
    hub: FakeHub,
    push: Pusher,
    converted_folders,
    endpoint: str,
    status: int,
    retry_after: int | None,
    what: str,
    waited: float,
) -> None:
    hub.inject(endpoint, status, retry_after=retry_after)

    result = push(converted_folders["text-classification"], "org/retried")

    answered = 404 if endpoint == "repo-info" else 200  # the repository is new: the retry learns it is missing
    assert [r.status for r in hub.calls(endpoint)][:2] == [status, answered]
    assert push.sleeps == [waited]
    assert f"push: the Hub answered {status} to {what}; retrying in {waited:g} s (attempt 2 of 4)" in push.lines
    assert result.pr_num == 1 and [pr.num for pr in hub.repos["org/retried"].pull_requests] == [1]
    assert arrived(hub, "org/retried", "refs/pr/1") == listed(converted_folders["text-classification"])


def test_a_dropped_connection_is_retried(hub: FakeHub, push: Pusher, converted_folders) -> None:
    hub.inject("commit", drop=True)

    result = push(converted_folders["text-classification"], "org/dropped")

    assert result.new_commit and len(hub.repos["org/dropped"].pull_requests) == 1
    assert "push: the connection failed (RemoteProtocolError) to the commit; retrying in 2 s (attempt 2 of 4)" in (
        push.lines
    )


@pytest.mark.parametrize("create_pr", [True, False], ids=["pull-request", "branch"])
@pytest.mark.parametrize("fault", ["lost", "500-after-commit"])
def test_a_commit_whose_answer_was_lost_is_not_made_twice(
    hub: FakeHub, push: Pusher, converted_folders, create_pr: bool, fault: str
) -> None:
    if fault == "lost":
        hub.inject("commit", drop=True, after_handling=True)
    else:
        hub.inject("commit", 500, after_handling=True)

    result = push(converted_folders["fill-mask"], "org/lost", create_pr=create_pr)

    repo = hub.repos["org/lost"]
    assert len(hub.calls("commit")) == 1, "the comparison found the commit: it was not sent again"
    assert result.new_commit and push.sleeps == [2.0]
    assert "push: the commit's answer was lost, but the Hub holds the files: the commit was made" in push.lines
    if create_pr:
        assert [pr.num for pr in repo.pull_requests] == [1] and result.pr_num == 1
        assert arrived(hub, "org/lost", "refs/pr/1") == listed(converted_folders["fill-mask"])
    else:
        assert len(repo.history()) == 2 and result.commit_oid == repo.refs["main"] and not repo.pull_requests
        assert arrived(hub, "org/lost", "main") == listed(converted_folders["fill-mask"])


def test_a_failure_that_persists_ends_in_one_error(hub: FakeHub, push: Pusher, converted_folders) -> None:
    hub.inject("commit", 503, times=10)

    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/down")

    assert push.sleeps == [2.0, 4.0, 8.0] and len(hub.calls("commit")) == 4
    assert str(failed.value).startswith("the Hub answered 503 while opening the pull request, 4 times")
    assert "push again later; a folder already on the Hub makes no new commit" in str(failed.value)
    assert not hub.repos["org/down"].pull_requests


def test_a_retry_after_beyond_a_minute_is_not_waited_for(hub: FakeHub, push: Pusher, converted_folders) -> None:
    hub.inject("commit", 429, retry_after=3600)

    with pytest.raises(PushError, match="the Hub answered 429 while opening the pull request"):
        push(converted_folders["text-classification"], "org/limited")

    assert push.sleeps == [] and len(hub.calls("commit")) == 1


# -- refusals from the Hub ------------------------------------------------------------------------------------------


def test_an_invalid_token_is_a_401_naming_the_scope(hub: FakeHub, push: Pusher, converted_folders) -> None:
    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/x", token=UNKNOWN)

    message = str(failed.value)
    assert message.startswith("the Hub refused HF_TOKEN while reading the repository (401: Invalid credentials")
    assert (
        "Set HF_TOKEN to a valid token (" + hub.url + "/settings/tokens): a token with write access to org: a "
        "fine-grained token with write access to org's repositories, or a classic write token." in message
    )
    assert "org/x" not in hub.repos


def test_a_read_token_is_a_403_naming_the_scope(hub: FakeHub, push: Pusher, converted_folders) -> None:
    push(converted_folders["text-classification"], "org/x", create_pr=False)

    with pytest.raises(PushError) as failed:
        push(converted_folders["fill-mask"], "org/x", token=READ)

    assert str(failed.value) == (
        "HF_TOKEN is a read token of alice: it may not write to org/x. Set HF_TOKEN to a token with write access to "
        "org: a fine-grained token with write access to org's repositories, or a classic write token."
    )
    assert not hub.repos["org/x"].pull_requests and len(hub.repos["org/x"].history()) == 2


def test_a_namespace_the_user_may_not_create_in_is_a_403(hub: FakeHub, push: Pusher, converted_folders) -> None:
    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/x", token=BOB)

    assert str(failed.value).startswith(
        "HF_TOKEN's user bob may not write to org (creating the repository: You don't have the rights to create a "
        'model under the namespace "org")'
    )
    assert "Org must exist and be your user name or an organisation you may create repositories in" in str(failed.value)
    assert not hub.repos


def test_a_branch_the_user_may_not_commit_to_is_a_403_and_a_pull_request_is_the_way(
    hub: FakeHub, push: Pusher, converted_folders
) -> None:
    push(converted_folders["question-answering"], "org/shared", create_pr=False)

    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/shared", token=BOB, create_pr=False)
    assert str(failed.value).startswith("HF_TOKEN's user bob may not write to org (committing to main: Forbidden")
    assert str(failed.value).endswith("or a classic write token, or push as a pull request (--create-pr).")

    proposed = push(converted_folders["text-classification"], "org/shared", token=BOB)
    assert proposed.pr_num == 1 and hub.repos["org/shared"].pull_requests[0].author == "bob"


def test_a_missing_namespace_is_a_404_naming_the_rule(hub: FakeHub, push: Pusher, converted_folders) -> None:
    hub.inject("create-repo", 404)

    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "nobody/x")

    assert str(failed.value).startswith("the Hub has no namespace nobody (")
    assert "OWNER must be your user name or an existing organisation: pass --repo-id OWNER/NAME" in str(failed.value)


def test_a_taken_name_the_hub_does_not_show_is_not_said_to_be_created(
    hub: FakeHub, push: Pusher, converted_folders
) -> None:
    push(converted_folders["question-answering"], "org/Secret", create_pr=False)
    push.log.seek(0)
    push.log.truncate()

    with pytest.raises(PushError) as failed:
        push(
            converted_folders["question-answering"], "org/secret"
        )  # names ignore case: taken, yet not found under this one

    assert str(failed.value).startswith(
        "org/secret exists, but HF_TOKEN cannot read it (You already created this model repo): a private repository, "
        "or one whose name differs only in letter case. Pass its exact name"
    )
    assert "created" not in push.log.getvalue() and list(hub.repos) == ["org/Secret"]


def test_a_missing_branch_is_one_error(hub: FakeHub, push: Pusher, converted_folders) -> None:
    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/x", revision="dev", create_pr=False)

    assert str(failed.value) == (
        "org/x has no branch dev. Create it on the Hub first, or leave the revision unset to push to main "
        "(branches: main)."
    )
    assert not hub.calls("commit")


@pytest.mark.parametrize(
    ("repo_id", "expected", "requests"),
    [
        ("tiny", "repository 'tiny' is not OWNER/NAME", 0),
        ("org/a/b", "repository 'org/a/b' is not OWNER/NAME", 0),
        ("org/bad--name", "repository name 'org/bad--name' is refused by huggingface_hub (Cannot have -- or ..", 0),
        ("org/x.git", "repository name 'org/x.git' is refused by huggingface_hub", 0),
        ("org/modèle", "repository name 'org/modèle' is refused by huggingface_hub (Repo id must use alphanumeric", 0),
    ],
)
def test_a_repository_name_the_hub_refuses_names_the_rule(
    hub: FakeHub, push: Pusher, converted_folders, repo_id: str, expected: str, requests: int
) -> None:
    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], repo_id)

    assert str(failed.value).startswith(expected)
    assert "letters, digits, '-', '_' and '.', at most 96 characters" in str(failed.value)
    assert len(hub.requests) == requests, "the client's own check comes before any request"


def test_a_name_the_hub_refuses_after_huggingface_hub_accepted_it_names_the_rule(
    hub: FakeHub, push: Pusher, converted_folders
) -> None:
    hub.inject("create-repo", 400)  # the Hub's rules may be stricter than the client's copy of them

    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/fine-for-the-client")

    assert str(failed.value).startswith("the Hub refused the repository name 'org/fine-for-the-client' (Error)")
    assert "letters, digits, '-', '_' and '.', at most 96 characters" in str(failed.value)


def test_no_token_names_where_it_is_read_from_before_any_request(
    hub: FakeHub, push: Pusher, converted_folders, tmp_path: Path
) -> None:
    with pytest.raises(PushError) as failed:
        push(converted_folders["text-classification"], "org/x", token=None)

    stored = tmp_path / "hf-home" / "token"  # where huggingface_hub reads the token hf auth login stored
    assert str(failed.value) == (
        f"no Hugging Face token: HF_TOKEN is not set and hf auth login stored none ({stored}), and pushing to org/x "
        "needs one. Set HF_TOKEN to a token with write access to org: a fine-grained token with write access to "
        "org's repositories, or a classic write token (or store one with hf auth login)."
    )
    assert hub.requests == []


# -- before a conversion: may the token make the push? ----------------------------------------------------------------


def test_check_access_lets_a_push_the_token_may_make_go_on(hub: FakeHub) -> None:
    from longformer_action.publishing.hub_access import check_access

    hub.add_repo("org/shared")
    log, waits = io.StringIO(), []
    common = {"revision": None, "private": False, "progress": Progress(log), "sleep": waits.append}

    check_access("org/new", create_pr=False, token=WRITE, **common)  # alice's organisation
    check_access("alice/new", create_pr=False, token=WRITE, **common)  # alice's own namespace
    check_access("org/shared", create_pr=True, token=BOB, **common)  # anyone may open a pull request
    hub.inject("whoami", 503, times=4)
    check_access("org/new", create_pr=True, token=WRITE, **common)  # the Hub cannot tell: the conversion goes on

    assert log.getvalue().splitlines() == [
        "push: HF_TOKEN is alice's write token, a member of org; the push comes after the check",
        "push: HF_TOKEN is alice's write token; the push comes after the check",
        "push: HF_TOKEN is bob's write token; the push comes after the check",
        *[f"push: the Hub answered 503 to the token's user; retrying in {w:g} s (attempt {i} of 4)" for i, w in
          ((2, 2), (3, 4), (4, 8))],
        "push: HF_TOKEN could not be checked before converting (the Hub answered 503); the push will try after the "
        "check",
    ]  # fmt: skip
    assert hub.endpoints == ["whoami", "whoami", "whoami", "repo-info", *["whoami"] * 4]
    assert list(hub.repos) == ["org/shared"] and waits == [2.0, 4.0, 8.0]


# -- refusals before any request ------------------------------------------------------------------------------------


def test_a_checked_folder_lists_every_file(converted_folders) -> None:
    folder = converted_folders["text2text-generation"]
    checked = verify_folder(folder)
    assert {f.path: f.sha256 for f in checked.files} == listed(folder)
    assert checked.total_bytes == sum(p.stat().st_size for p in folder.iterdir())


def tamper(folder: Path, how: str) -> None:
    if how == "changed-file":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "num_labels": 7}))
    elif how == "extra-file":
        (folder / "notes.txt").write_text("not converted\n")
    elif how == "missing-file":
        (folder / "tokenizer.json").unlink()
    elif how == "no-sums":
        (folder / CHECKSUMS_NAME).unlink()
    elif how == "bad-sums-line":
        (folder / CHECKSUMS_NAME).write_text("not a digest line\n")
    elif how == "escaping-path":
        text = (folder / CHECKSUMS_NAME).read_text()
        (folder / CHECKSUMS_NAME).write_text(text + f"{'0' * 64}  ../outside.txt\n")
    elif how == "failed-check":
        report = json.loads((folder / REPORT_NAME).read_text())
        report["status"] = "failed"
        report["check"] = {**report["check"], "passed": False, "max_abs_diff": 0.25}
        (folder / REPORT_NAME).write_text(json.dumps(report))
        rewrite_sums(folder)
    elif how == "no-report":
        (folder / REPORT_NAME).unlink()
        rewrite_sums(folder)


@pytest.mark.parametrize(
    ("how", "expected", "fix"),
    [
        ("changed-file", "config.json changed since the conversion (SHA-256 ", "A folder is pushed only as it was"),
        ("extra-file", "1 file(s) not listed in SHA256SUMS: notes.txt", "Remove them"),
        ("missing-file", "tokenizer.json, listed in SHA256SUMS, is missing", "Convert again"),
        ("no-sums", "it holds no SHA256SUMS", "Convert again"),
        ("bad-sums-line", "line 1 of SHA256SUMS is not a '<sha256>  <file in the folder>' line", "Convert again"),
        ("escaping-path", "is not a '<sha256>  <file in the folder>' line", "Convert again"),
        (
            "failed-check",
            "its report says the conversion or its check failed (max abs diff 0.25, tolerance 1e-05)",
            "A folder whose check failed is never pushed",
        ),
        ("no-report", "it holds no conversion-report.json, so nothing says it was checked", "Convert again"),
    ],
)
def test_an_unchecked_or_tampered_folder_is_refused_before_any_request(
    hub: FakeHub, push: Pusher, converted_folders, tmp_path: Path, how: str, expected: str, fix: str
) -> None:
    folder = copy(converted_folders["text-classification"], tmp_path)
    tamper(folder, how)

    with pytest.raises(PushError) as refused:
        push(folder, "org/x")

    assert str(refused.value).startswith(f"{folder} is not pushed: ") and expected in str(refused.value)
    assert fix in str(refused.value)
    assert hub.requests == [] and not hub.repos


@pytest.mark.parametrize("how", ["relabelled", "added"])
def test_an_edit_hidden_by_a_rewritten_sha256sums_is_refused_as_verify_refuses_it(
    hub: FakeHub, push: Pusher, converted_folders, tmp_path: Path, how: str
) -> None:
    folder = copy(converted_folders["text-classification"], tmp_path)
    if how == "relabelled":  # id2label edited, then `sha256sum` run again: SHA256SUMS verifies
        config = json.loads((folder / "config.json").read_text())
        labels = {"0": "POS", "1": "NEU", "2": "NEG"}
        (folder / "config.json").write_text(json.dumps({**config, "id2label": labels}, indent=2))
        expected = (
            "config.json changed since the conversion (its SHA-256 differs from conversion-report.json): id2label is "
            '{"0": "POS", "1": "NEU", "2": "NEG"} where conversion-report.json records {"0": "LABEL_0"'
        )
    else:
        (folder / "notes.txt").write_text("not converted\n")
        expected = "notes.txt is not among the files conversion-report.json records"
    rewrite_sums(folder)

    with pytest.raises(PushError) as refused:
        push(folder, "org/x")

    message = str(refused.value)
    assert message.startswith(f"{folder} is not pushed: {expected}"), message
    assert "(SHA256SUMS was written again after the conversion)" in message
    assert (
        "A folder is pushed only as it was checked: convert again (longformer-convert convert ... --output DIR) and "
        "push the new folder, or run " in message
    )
    assert f"longformer-convert verify --model {folder} --checkpoint CKPT to see what changed" in message
    assert hub.requests == [] and not hub.repos


def test_a_folder_converted_without_the_check_is_refused_naming_the_fix(
    hub: FakeHub, push: Pusher, unchecked_folder
) -> None:
    with pytest.raises(PushError) as refused:
        push(unchecked_folder, "org/x")

    assert str(refused.value) == (
        f"{unchecked_folder} is not pushed: it was converted with --no-check: its report records no passed check. "
        "Convert again without --no-check, so that the check's result is in the folder's report "
        "(longformer-convert verify checks a folder against its checkpoint but does not change the folder)."
    )
    assert hub.requests == []


def test_a_missing_folder_is_refused(hub: FakeHub, push: Pusher, tmp_path: Path) -> None:
    with pytest.raises(PushError, match="is not pushed: it does not exist. Pass the --output folder"):
        push(tmp_path / "nowhere", "org/x")
    assert hub.requests == []
