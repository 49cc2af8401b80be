"""``longformer-convert push`` and ``convert --push-to-hub`` (``commands/push.py``, ``cli.py``), in process, against the
fake Hub of ``tests/fake_hub.py`` (``HF_ENDPOINT`` pointed at it, Xet off).

The folders are every task's Trainer checkpoint converted and checked once per run (``converted_folders``). What
the push library does request by request is ``tests/test_hub.py``'s; here: what a user of the command line and of
GitHub Actions sees (the exit status, the one ``Error:`` line, the log, the outputs and the step summary), and that
the token appears in none of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longformer_action.registry.files import CHECKSUMS_NAME, REPORT_NAME

from .fake_hub import FakeHub, serving
from .helpers import one_error_line, parse_github_output

WRITE = "hf_alice_write_Tq19cV"
READ = "hf_alice_read_Mw44kP"
BOB = "hf_bob_write_Hs02dE"
UNKNOWN = "hf_revoked_Yn63aL"
SECRETS = (WRITE, READ, BOB, UNKNOWN)
WRITE_SCOPE = "a token with write access to org: a fine-grained token with write access to org's repositories"


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub, with no token leaving the Authorization header and none stored on it; retry waits recorded."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    with serving(monkeypatch, tmp_path / "hf-home", write=WRITE, read=READ, bob=BOB) as fake:
        fake.waits = waits  # type: ignore[attr-defined]
        yield fake
    for token in SECRETS:
        assert fake.token_leaks(token) == [] and fake.stored_leaks(token) == []


def shown(result: Any, *files: Path) -> str:
    """Everything a user sees: stdout, stderr and the files the run wrote; no token in it but in ``::add-mask::``."""
    text = result.stdout + result.stderr
    for path in files:
        for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
            text += file.read_bytes().decode("utf-8", "replace")
    unmasked = "\n".join(line for line in text.splitlines() if not line.startswith("::add-mask::"))
    for token in SECRETS:
        assert token not in unmasked, "a token was shown"
    return text


def sums_on_hub(hub: FakeHub, repo_id: str, revision: str) -> dict[str, str]:
    return {p: d for p, d in hub.repos[repo_id].sha256sums(revision).items() if p != ".gitattributes"}


def sums_of(folder: Path) -> dict[str, str]:
    lines = (folder / CHECKSUMS_NAME).read_text().splitlines()
    listed = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    return listed | {CHECKSUMS_NAME: hashlib.sha256((folder / CHECKSUMS_NAME).read_bytes()).hexdigest()}


def actions_env(tmp_path: Path, token: str) -> dict[str, str]:
    (tmp_path / "output").touch()
    (tmp_path / "summary.md").touch()
    return {
        "HF_TOKEN": token,
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    }


# -- push ------------------------------------------------------------------------------------------------------------


def test_push_sends_every_tasks_folder_as_a_pull_request(hub: FakeHub, cli, converted_folders) -> None:
    for task, folder in converted_folders.items():
        result = cli("push", "--model", folder, "--repo-id", f"org/{task}", env={"HF_TOKEN": WRITE})

        assert result.exit_code == 0, result.stderr
        assert result.stdout == "", "stdout is for data"
        assert sums_on_hub(hub, f"org/{task}", "refs/pr/1") == sums_of(folder), f"{task}: byte for byte"
        assert hub.repos[f"org/{task}"].names("main") == [".gitattributes"], "main waits for the review"
        pr = hub.repos[f"org/{task}"].pull_requests[0]
        report = json.loads((folder / REPORT_NAME).read_text())
        assert f"source SHA-256: `{report['source']['sha256']}`" in pr.description, "the provenance"
        assert f"push: opened pull request #1: {hub.url}/org/{task}/discussions/1" in result.stderr
        shown(result)


def test_a_second_push_makes_no_commit_and_says_so(hub: FakeHub, cli, converted_folders) -> None:
    folder = converted_folders["token-classification"]
    first = cli("push", "--model", folder, "--repo-id", "org/tagger", "--no-create-pr", env={"HF_TOKEN": WRITE})
    commits = len(hub.calls("commit"))

    again = cli("push", "--model", folder, "--repo-id", "org/tagger", "--no-create-pr", env={"HF_TOKEN": WRITE})

    assert (first.exit_code, again.exit_code) == (0, 0), again.stderr
    assert len(hub.calls("commit")) == commits == 1 and len(hub.repos["org/tagger"].history()) == 2
    head = hub.repos["org/tagger"].refs["main"]
    assert f"push: no new commit: the folder's files are already on main at {head}" in again.stderr
    assert [line for line in again.stderr.splitlines() if "no new commit" in line] == [
        f"push: no new commit: the folder's files are already on main at {head}"
    ], "said once"
    assert again.stderr.splitlines()[-1].startswith(f"push: {len(sums_of(folder))} files, ")
    assert again.stderr.splitlines()[-1].endswith(" s)") and "nothing uploaded" in again.stderr.splitlines()[-1]


def test_the_log_holds_the_push_lines_without_huggingface_hubs_progress_bars(
    hub: FakeHub, cli, converted_folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    hf_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")  # the fake Hub's default; a user's shell has none
    monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    monkeypatch.setattr(hf_tqdm, "progress_bar_states", {})
    folder = converted_folders["text-classification"]

    first = cli("push", "--model", folder, "--repo-id", "org/quiet", "--no-create-pr", env={"HF_TOKEN": WRITE})
    again = cli("push", "--model", folder, "--repo-id", "org/quiet", "--no-create-pr", env={"HF_TOKEN": WRITE})

    assert (first.exit_code, again.exit_code) == (0, 0), first.stderr + again.stderr
    for result in (first, again):
        assert "%|" not in result.stderr and "it/s" not in result.stderr and "LFS files" not in result.stderr
        assert all(line.startswith(("push:", "Warning:")) for line in result.stderr.splitlines()), result.stderr
    assert "push: uploading " in first.stderr and "push: committed to main: " in first.stderr
    assert not hf_tqdm.are_progress_bars_disabled(), "huggingface_hub's bars are back on after the push"


def test_a_500_then_success_is_retried_and_logged(hub: FakeHub, cli, converted_folders) -> None:
    hub.inject("commit", 500)

    result = cli(
        "push", "--model", converted_folders["fill-mask"], "--repo-id", "org/mlm", env={"HF_TOKEN": WRITE}
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert [r.status for r in hub.calls("commit")] == [500, 200] and hub.waits == [2.0]
    assert "push: the Hub answered 500 to the commit; retrying in 2 s (attempt 2 of 4)" in result.stderr
    assert len(hub.repos["org/mlm"].pull_requests) == 1


@pytest.mark.parametrize(
    ("token", "fault", "status", "expected", "fix"),
    [
        (UNKNOWN, None, 401, "Error: the Hub refused HF_TOKEN while reading the repository (401: ", WRITE_SCOPE),
        (READ, None, 403, "Error: HF_TOKEN is a read token of alice: it may not write to org/x.", WRITE_SCOPE),
        (WRITE, "create-repo", 404, "Error: the Hub has no namespace org (", "OWNER must be your user name"),
    ],
    ids=["401", "403", "404"],
)
def test_a_refusal_is_one_error_line_with_its_fix(
    hub: FakeHub, cli, converted_folders, token: str, fault: str | None, status: int, expected: str, fix: str
) -> None:
    if status == 403:  # a read token: the repository exists, and may not be written to
        hub.add_repo("org/x")
    if fault:
        hub.inject(fault, status)

    result = cli(
        "push", "--model", converted_folders["text-classification"], "--repo-id", "org/x", env={"HF_TOKEN": token}
    )

    line = one_error_line(result)
    assert result.exit_code == 1
    assert line.startswith(expected) and fix in line
    assert status in [r.status for r in hub.requests]
    shown(result)


@pytest.mark.parametrize("how", ["unchecked", "tampered", "relabelled-and-summed-again"])
def test_an_unchecked_or_tampered_folder_is_refused_before_any_request(
    hub: FakeHub, cli, converted_folders, unchecked_folder, tmp_path: Path, how: str
) -> None:
    folder = Path(shutil.copytree(converted_folders["text-classification"], tmp_path / "model"))
    if how == "unchecked":
        folder, expected = unchecked_folder, "it was converted with --no-check"
    elif how == "tampered":
        (folder / "config.json").write_text((folder / "config.json").read_text().replace('"', "'", 2))
        expected = "config.json changed since the conversion (SHA-256 "
    else:  # the labels edited, then sha256sum run again: SHA256SUMS verifies, the report tells
        config = json.loads((folder / "config.json").read_text())
        config["id2label"] = {"0": "negative", "1": "neutral", "2": "positive"}
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        names = sorted(p.name for p in folder.iterdir() if p.name != CHECKSUMS_NAME)
        sums = subprocess.run(["sha256sum", *names], cwd=folder, capture_output=True, text=True, check=True).stdout
        (folder / CHECKSUMS_NAME).write_text(sums)
        assert subprocess.run(["sha256sum", "--check", "--quiet", CHECKSUMS_NAME], cwd=folder).returncode == 0
        expected = (
            "config.json changed since the conversion (its SHA-256 differs from conversion-report.json): id2label is "
            '{"0": "negative", "1": "neutral", "2": "positive"} where conversion-report.json records'
        )

    result = cli("push", "--model", folder, "--repo-id", "org/x", env={"HF_TOKEN": WRITE})

    line = one_error_line(result)
    assert result.exit_code == 1 and line.startswith(f"Error: {folder} is not pushed: ") and expected in line
    assert hub.requests == [], "refused before any request"


def test_private_for_an_existing_public_repository_is_refused_before_any_upload(
    hub: FakeHub, cli, converted_folders
) -> None:
    hub.add_repo("org/public")

    result = cli(
        "push", "--model", converted_folders["text-classification"], "--repo-id", "org/public", "--private",
        env={"HF_TOKEN": WRITE},
    )  # fmt: skip

    line = one_error_line(result)
    assert result.exit_code == 1
    assert line == (
        "Error: org/public exists and is public: --private only makes a new repository private. Make it private on "
        f"the Hub ({hub.url}/org/public/settings) and push again, or drop --private to push to the public repository."
    )
    assert "Warning" not in result.stderr
    assert hub.endpoints == ["repo-info"] and not hub.repos["org/public"].private
    assert len(hub.repos["org/public"].history()) == 1 and not hub.repos["org/public"].pull_requests


def test_no_token_and_a_bad_name_are_refused_before_any_request(hub: FakeHub, cli, converted_folders) -> None:
    folder = converted_folders["text-classification"]

    missing = cli("push", "--model", folder, "--repo-id", "org/x", env={"HF_TOKEN": ""})
    usage = cli("push", "--model", folder, "--repo-id", "no-owner", env={"HF_TOKEN": WRITE})
    rule = cli("push", "--model", folder, "--repo-id", "org/bad--name", env={"HF_TOKEN": WRITE})

    assert one_error_line(missing).startswith("Error: no Hugging Face token: HF_TOKEN is not set")
    assert usage.exit_code == 2 and "'no-owner' is not OWNER/NAME" in usage.stderr
    assert rule.exit_code == 1 and "is refused by huggingface_hub" in one_error_line(rule)
    assert hub.requests == []


def test_the_token_hf_auth_login_stored_is_used_and_named(hub: FakeHub, cli, converted_folders, tmp_path: Path) -> None:
    hf = Path(sys.executable).with_name("hf")  # huggingface_hub's own command line, against the fake Hub
    login = subprocess.run([hf, "auth", "login", "--token", WRITE], capture_output=True, text=True, timeout=120)
    assert login.returncode == 0, login.stderr
    stored = tmp_path / "hf-home" / "token"
    assert stored.read_text().strip() == WRITE
    folder = converted_folders["text-classification"]

    pushed = cli("push", "--model", folder, "--repo-id", "org/stored", env=actions_env(tmp_path, ""))
    stored.write_text(UNKNOWN)  # a token revoked since
    refused = cli("push", "--model", folder, "--repo-id", "org/refused", env={"HF_TOKEN": ""})

    assert pushed.exit_code == 0, pushed.stderr
    assert hub.repos["org/stored"].pull_requests[0].author == "alice"
    assert pushed.stderr.splitlines()[0] == f"::add-mask::{WRITE}", "masked before anything else"
    assert one_error_line(refused).startswith(
        f"Error: the Hub refused the token hf auth login stored in {stored} while reading the repository (401: "
    )
    shown(pushed, tmp_path / "output", tmp_path / "summary.md")
    shown(refused)


def test_in_github_actions_the_outputs_and_the_summary_link_the_pull_request(
    hub: FakeHub, cli, converted_folders, tmp_path: Path
) -> None:
    env = actions_env(tmp_path, WRITE)

    result = cli("push", "--model", converted_folders["question-answering"], "--repo-id", "org/qa", env=env)

    assert result.exit_code == 0, result.stderr
    pr_url = f"{hub.url}/org/qa/discussions/1"
    head = hub.repos["org/qa"].refs["refs/pr/1"]
    outputs = parse_github_output((tmp_path / "output").read_text())
    assert outputs == {"hub-commit-url": f"{hub.url}/org/qa/commit/{head}", "hub-pr-url": pr_url}
    summary = (tmp_path / "summary.md").read_text()
    assert f"Opened pull request [#1]({pr_url}) against `main`" in summary
    assert f"[`{head[:12]}`]({hub.url}/org/qa/commit/{head})" in summary
    assert f"::add-mask::{WRITE}" in result.stderr.splitlines()[0], "masked before anything else"
    description = hub.repos["org/qa"].pull_requests[0].description
    assert "workflow run: https://github.com/acme/models/actions/runs/4242 (commit `0123456789ab" in description
    shown(result, tmp_path / "output", tmp_path / "summary.md")


def test_in_github_actions_a_refusal_is_an_annotation_and_a_summary(
    hub: FakeHub, cli, converted_folders, tmp_path: Path
) -> None:
    result = cli(
        "push",
        "--model",
        converted_folders["question-answering"],
        "--repo-id",
        "org/qa",
        env=actions_env(tmp_path, UNKNOWN),
    )

    assert result.exit_code == 1
    assert "::error title=longformer-convert%3A push failed::the Hub refused HF_TOKEN" in result.stderr
    assert (tmp_path / "summary.md").read_text().startswith("## Push to the Hugging Face Hub failed")
    assert parse_github_output((tmp_path / "output").read_text()) == {}
    shown(result, tmp_path / "output", tmp_path / "summary.md")


# -- convert --push-to-hub -------------------------------------------------------------------------------------------


def test_convert_pushes_the_folder_once_it_is_checked_and_in_place(
    hub: FakeHub, cli, task_checkpoints, base_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    env = actions_env(tmp_path, WRITE)
    checkpoint = task_checkpoints["text-classification"][0]

    result = cli(
        "convert", "--checkpoint", checkpoint, "--base-model", base_model, "--output", out,
        "--push-to-hub", "org/classifier", "--no-hub-create-pr", "--hub-commit-message", "Nightly classifier",
        env=env,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    log = result.stderr
    assert log.index("push: HF_TOKEN is alice's write token, a member of org") < log.index("read: ")
    assert log.index("publish: ") < log.index("push: uploading "), "the push comes after the folder is in place"
    repo = hub.repos["org/classifier"]
    assert sums_on_hub(hub, "org/classifier", "main") == sums_of(out) and not repo.pull_requests
    assert repo.commits[repo.refs["main"]].title == "Nightly classifier"
    outputs = parse_github_output((tmp_path / "output").read_text())
    assert outputs["hub-commit-url"] == f"{hub.url}/org/classifier/commit/{repo.refs['main']}"
    assert outputs["hub-pr-url"] == "" and outputs["model-dir"] == str(out)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## Longformer conversion: converted and checked")
    assert f"Committed to `main`, commit [`{repo.refs['main'][:12]}`]" in summary
    shown(result, tmp_path / "output", tmp_path / "summary.md", out)


def test_convert_refuses_a_push_it_cannot_make_before_converting(
    hub: FakeHub, cli, task_checkpoints, base_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    checkpoint = task_checkpoints["text-classification"][0]
    common = ["convert", "--checkpoint", checkpoint, "--base-model", base_model, "--output", out]

    no_token = cli(*common, "--push-to-hub", "org/x", env={"HF_TOKEN": ""})
    unchecked = cli(*common, "--push-to-hub", "org/x", "--no-check", env={"HF_TOKEN": WRITE})
    no_repo = cli(*common, "--hub-private", env={"HF_TOKEN": WRITE})

    assert one_error_line(no_token).startswith("Error: no Hugging Face token") and "read:" not in no_token.stderr
    assert unchecked.exit_code == 2 and "--push-to-hub pushes a checked folder only" in unchecked.stderr
    assert no_repo.exit_code == 2 and "--hub-private applies to a push: add --push-to-hub OWNER/NAME" in no_repo.stderr
    assert not out.exists() and hub.requests == []


def test_convert_says_the_folder_stays_when_the_hub_refuses(
    hub: FakeHub, cli, task_checkpoints, base_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    checkpoint = task_checkpoints["text-classification"][0]
    hub.inject("create-repo", 404)  # the namespace is alice's organisation: the Hub's answer comes at the push

    result = cli(
        "convert", "--checkpoint", checkpoint, "--base-model", base_model, "--output", out,
        "--push-to-hub", "org/x", env={"HF_TOKEN": WRITE},
    )  # fmt: skip

    line = one_error_line(result)
    assert result.exit_code == 1 and (out / CHECKSUMS_NAME).is_file(), "the checked folder stays"
    assert line.startswith("Error: the Hub has no namespace org (")
    assert "OWNER must be your user name or an existing organisation: pass --push-to-hub OWNER/NAME" in line
    assert (
        f"the checked folder is in place at {out}, so the push alone can be run again: longformer-convert push " in line
    )
    assert line.endswith(f"--model {out} --repo-id org/x."), "convert's names in the fix, push's in the command"


@pytest.mark.parametrize(
    ("token", "repo_id", "options", "expected", "asked"),
    [
        (
            UNKNOWN, "org/x", (),
            "Error: the Hub refused HF_TOKEN while checking the token (401: ", ["whoami"],
        ),
        (
            READ, "org/x", ("--no-hub-create-pr",),
            "Error: HF_TOKEN is a read token of alice: it may not write to org/x. Set HF_TOKEN to a token with write "
            "access to org: a fine-grained token with write access to org's repositories, or a classic write token.",
            ["whoami"],
        ),
        (
            WRITE, "nobody/x", (),
            "Error: HF_TOKEN's user alice may not write to nobody (creating the repository: nobody is neither alice "
            "nor an organisation alice may write in). Nobody must exist and be your user name or an organisation you "
            "may create repositories in;", ["whoami", "repo-info"],
        ),
        (
            BOB, "org/public", ("--no-hub-create-pr", "--hub-revision", "main"),
            "Error: HF_TOKEN's user bob may not write to org (committing to main: org is neither bob nor an "
            "organisation bob may write in). Set HF_TOKEN to a token with write access to org: a fine-grained token "
            "with write access to org's repositories, or a classic write token, or push as a pull request "
            "(--hub-create-pr).", ["whoami", "repo-info"],
        ),
        (
            WRITE, "org/public", ("--hub-private",),
            "Error: org/public exists and is public: --hub-private only makes a new repository private. Make it "
            "private on the Hub", ["whoami", "repo-info"],
        ),
    ],
    ids=["401", "read-token", "foreign-namespace", "foreign-branch", "private-of-a-public-repository"],
)  # fmt: skip
def test_convert_refuses_a_push_the_token_cannot_make_before_converting(
    hub: FakeHub,
    cli,
    task_checkpoints,
    base_model: Path,
    tmp_path: Path,
    token: str,
    repo_id: str,
    options: tuple[str, ...],
    expected: str,
    asked: list[str],
) -> None:
    hub.add_repo("org/public")
    out = tmp_path / "model"

    result = cli(
        "convert", "--checkpoint", task_checkpoints["text-classification"][0], "--base-model", base_model,
        "--output", out, "--push-to-hub", repo_id, *options, env={"HF_TOKEN": token},
    )  # fmt: skip

    line = one_error_line(result)
    assert result.exit_code == 1 and line.startswith(expected), line
    assert "read: " not in result.stderr and not out.exists(), "refused before the conversion"
    assert hub.endpoints == asked
    assert len(hub.repos["org/public"].history()) == 1 and list(hub.repos) == ["org/public"]
    shown(result)
