"""``--base-model``: local folders, and Hub ids fetched from a local fake Hub that speaks the real protocol.

The Hub cannot be reached from the test machines, so ``tests/fake_hub.py`` serves the endpoints huggingface_hub's
``snapshot_download`` calls (model info, tree listing, ``resolve`` with its headers, an LFS redirect to a CDN-like
origin) and records every request. The served repo holds large LFS weights next to the config and tokenizer: the
tests prove those are never asked for.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from longformer_action import demo
from longformer_action.errors import BaseModelError
from longformer_action.reading.base_model import BaseModel, resolve_base_model, tokenizer_files

from .fake_hub import FakeHub, LfsFile, commit_id, point_client_at

REPO = "org/tiny-longformer"
PRIVATE = "org/private-longformer"
GATED = "org/gated-longformer"
BERT = "org/tiny-bert"
WEIGHTS_ONLY = "org/weights-only"

PRIVATE_TOKEN = "hf_private_reader"
GATE_TOKEN = "hf_gate_accepted"
OTHER_TOKEN = "hf_valid_but_unrelated"

WEIGHTS = {"model.safetensors": LfsFile(32 << 20, b"\1"), "pytorch_model.bin": LfsFile(32 << 20, b"\2")}

#: Longest a single resolve or conversion may take before the test fails instead of hanging.
DEADLINE = 120.0

T = TypeVar("T")


def bounded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` with a deadline: huggingface_hub's API calls carry no timeout of their own."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=DEADLINE)
    finally:
        pool.shutdown(wait=False)


def resolve(spec: str, **kwargs: Any) -> BaseModel:
    return bounded(resolve_base_model, spec, **kwargs)


def resolve_error(spec: str, **kwargs: Any) -> str:
    with pytest.raises(BaseModelError) as info:
        resolve(spec, **kwargs)
    message = info.value.format_message()
    assert "\n" not in message, "errors are one line"
    return message


def served_tokenizer_files(folder: Path) -> list[str]:
    return [p.name for p in tokenizer_files(folder)]


@pytest.fixture()
def hub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """Returns ``point(endpoint)``: points huggingface_hub at ``endpoint`` with a fresh home; returns the cache."""
    from huggingface_hub.utils import close_session

    def point(endpoint: str) -> Path:
        point_client_at(monkeypatch, endpoint, tmp_path / "hf-home")
        return tmp_path / "hf-home" / "hub"

    yield point
    close_session()


@pytest.fixture()
def hub(base_model: Path, tmp_path: Path, hub_home: Callable[[str], Path]) -> Iterator[FakeHub]:
    """A running fake Hub with a public, a private, a gated, a BERT and a weights-only repo."""
    bert = demo.make_base_model(tmp_path / "bert", tokenizer=False)
    config = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))

    fake = FakeHub()
    fake.add_repo(REPO, base_model, lfs=WEIGHTS, revisions=("main", "v1"))
    fake.add_repo(PRIVATE, base_model, lfs=WEIGHTS, private=True, allowed_tokens=(PRIVATE_TOKEN,))
    fake.add_repo(GATED, base_model, lfs=WEIGHTS, gated=True, allowed_tokens=(GATE_TOKEN,))
    fake.add_repo(BERT, bert)
    fake.add_repo(WEIGHTS_ONLY, lfs=WEIGHTS)
    fake.valid_tokens.add(OTHER_TOKEN)
    with fake.running():
        fake.cache = hub_home(fake.url)
        yield fake


def assert_no_weights_requested(hub: FakeHub) -> None:
    for path in hub.paths:
        assert not any(name in path for name in WEIGHTS), f"weights were requested: {path}"
        assert not path.startswith("/cdn-lfs/"), f"LFS content was requested: {path}"


# -- Hub ids ------------------------------------------------------------------------------------------------------


def test_hub_id_fetches_config_and_tokenizer_never_weights(hub: FakeHub, base_model: Path) -> None:
    base = resolve(REPO)

    assert base.commit == hub.repos[REPO].refs["main"] == commit_id(REPO, "main")
    assert base.folder.name == base.commit
    assert hub.cache is not None and base.folder.is_relative_to(hub.cache)
    assert base.config == json.loads((base_model / "config.json").read_text())
    expected = served_tokenizer_files(base_model)
    assert len(expected) >= 2, "the demo base model has tokenizer files"
    assert [p.name for p in base.tokenizer_files] == expected
    for path in base.tokenizer_files:
        assert path.read_bytes() == (base_model / path.name).read_bytes()

    assert "/api/models/org/tiny-longformer/revision/main" in hub.paths
    assert hub.requested_files(REPO) == {"config.json", *expected}
    assert_no_weights_requested(hub)
    assert all(r.authorization is None for r in hub.requests), "no token was given, none may be sent"


def test_revision_is_passed_through(hub: FakeHub) -> None:
    v1 = hub.repos[REPO].refs["v1"]
    assert v1 != hub.repos[REPO].refs["main"]

    base = resolve(REPO, revision="v1")

    assert base.revision == "v1"
    assert base.commit == v1
    assert "/api/models/org/tiny-longformer/revision/v1" in hub.paths
    resolved = [p for p in hub.paths if "/resolve/" in p]
    assert resolved and all(p.startswith(f"/{REPO}/resolve/{v1}/") for p in resolved)
    assert_no_weights_requested(hub)


def test_commit_revision_skips_the_info_call(hub: FakeHub) -> None:
    v1 = hub.repos[REPO].refs["v1"]

    base = resolve(REPO, revision=v1)

    assert base.commit == v1
    assert not any(p.startswith("/api/models/org/tiny-longformer/revision/") for p in hub.paths)
    assert f"/api/models/{REPO}/tree/{v1}" in hub.paths
    assert_no_weights_requested(hub)


def test_unknown_revision_names_it_and_the_fix(hub: FakeHub) -> None:
    message = resolve_error(REPO, revision="no-such-branch")

    assert "'no-such-branch'" in message and REPO in message
    assert "--revision" in message
    assert "/api/models/org/tiny-longformer/revision/no-such-branch" in hub.paths


@pytest.mark.parametrize("token", [None, OTHER_TOKEN], ids=["anonymous-401", "authenticated-404"])
def test_unknown_repo(hub: FakeHub, token: str | None) -> None:
    message = resolve_error("org/does-not-exist", token=token)

    assert "org/does-not-exist" in message
    assert "neither a local folder nor a model on the Hub" in message
    assert "HF_TOKEN" in message
    assert any(p.startswith("/api/models/org/does-not-exist") for p in hub.paths)


@pytest.mark.parametrize("token", [None, OTHER_TOKEN], ids=["anonymous-401", "not-accepted-403"])
def test_gated_repo_mentions_hf_token(hub: FakeHub, token: str | None) -> None:
    message = resolve_error(GATED, token=token)

    assert GATED in message and "gated" in message
    assert "HF_TOKEN" in message
    assert any(f"/{GATED}/resolve/" in p for p in hub.paths), "the gate is met at download time"
    assert_no_weights_requested(hub)


def test_gated_repo_with_an_accepted_token(hub: FakeHub) -> None:
    base = resolve(GATED, token=GATE_TOKEN)

    assert base.commit == hub.repos[GATED].refs["main"]
    assert hub.requests and all(r.authorization == f"Bearer {GATE_TOKEN}" for r in hub.requests)
    assert_no_weights_requested(hub)


def test_private_repo_without_a_token_is_not_found(hub: FakeHub) -> None:
    message = resolve_error(PRIVATE)

    assert PRIVATE in message and "HF_TOKEN" in message
    assert all(r.authorization is None for r in hub.requests)


def test_token_is_sent_as_bearer(hub: FakeHub) -> None:
    base = resolve(PRIVATE, token=PRIVATE_TOKEN)

    assert base.commit == hub.repos[PRIVATE].refs["main"]
    assert len(hub.requests) >= 3
    assert all(r.authorization == f"Bearer {PRIVATE_TOKEN}" for r in hub.requests)


def test_token_comes_from_hf_token_when_not_given(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", PRIVATE_TOKEN)

    base = resolve(PRIVATE)

    assert base.commit == hub.repos[PRIVATE].refs["main"]
    assert hub.requests and all(r.authorization == f"Bearer {PRIVATE_TOKEN}" for r in hub.requests)


def test_given_token_wins_over_hf_token(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", OTHER_TOKEN)

    resolve(PRIVATE, token=PRIVATE_TOKEN)

    assert hub.requests and all(r.authorization == f"Bearer {PRIVATE_TOKEN}" for r in hub.requests)


def test_invalid_token_points_at_hf_token_not_the_network(hub: FakeHub) -> None:
    message = resolve_error(REPO, token="hf_revoked")

    assert REPO in message and "HF_TOKEN" in message
    assert "network" not in message
    assert all(r.authorization == "Bearer hf_revoked" for r in hub.requests)


def test_hub_repo_without_config(hub: FakeHub) -> None:
    message = resolve_error(WEIGHTS_ONLY)

    assert WEIGHTS_ONLY in message and "no config.json" in message
    assert hub.requested_files(WEIGHTS_ONLY) == set()
    assert_no_weights_requested(hub)


def test_hub_repo_that_is_not_longformer(hub: FakeHub) -> None:
    message = resolve_error(BERT)

    assert "'bert'" in message and "not 'longformer'" in message
    assert hub.requested_files(BERT) == {"config.json"}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down(hub_home: Callable[[str], Path]) -> None:
    hub_home(f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()

    message = resolve_error(REPO)

    assert f"cannot fetch {REPO}" in message
    assert "check the network, or pass --base-model a local folder" in message.lower()
    assert time.monotonic() - start < 30, "a refused connection must fail fast, not retry for minutes"


def test_server_down_after_a_download_uses_the_cached_snapshot(
    base_model: Path, hub_home: Callable[[str], Path]
) -> None:
    fake = FakeHub()
    fake.add_repo(REPO, base_model, lfs=WEIGHTS)
    with fake.running():
        hub_home(fake.url)
        first = resolve(REPO)
    second = resolve(REPO)  # the server is gone; the refs/main entry in the cache resolves the commit

    assert second.folder == first.folder
    assert second.commit == first.commit == commit_id(REPO, "main")
    assert [p.name for p in second.tokenizer_files] == [p.name for p in first.tokenizer_files]


# -- local folders ------------------------------------------------------------------------------------------------


def test_local_folder_with_tokenizer(hub: FakeHub, base_model: Path) -> None:
    base = resolve(str(base_model), revision="v1")

    assert base.folder == base_model
    assert [p.name for p in base.tokenizer_files] == served_tokenizer_files(base_model)
    assert base.commit is None and base.revision is None, "a folder has no Hub revision"
    assert hub.requests == [], "a local folder never touches the Hub"


def test_local_folder_with_config_only(hub: FakeHub, base_model_no_tokenizer: Path) -> None:
    base = resolve(str(base_model_no_tokenizer))

    assert base.folder == base_model_no_tokenizer
    assert base.config["model_type"] == "longformer"
    assert base.tokenizer_files == []
    assert hub.requests == []


def test_relative_local_folder(hub: FakeHub, base_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(base_model.parent)

    base = resolve(base_model.name)  # "tiny-longformer" is also a valid Hub id: the folder wins

    assert base.folder == Path(base_model.name)
    assert base.commit is None
    assert hub.requests == []


def test_local_folder_without_config(hub: FakeHub, base_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tokenizer-only"
    folder.mkdir()
    for name in served_tokenizer_files(base_model):
        (folder / name).write_bytes((base_model / name).read_bytes())

    message = resolve_error(str(folder))

    assert str(folder) in message and "no config.json" in message
    assert hub.requests == []


@pytest.mark.parametrize("spec", ["./nope", "{tmp}/nope", "../nope/deeper", "~/surely-not-a-folder-here/nope"])
def test_missing_path_is_not_a_folder(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.chdir(tmp_path)
    spec = spec.format(tmp=tmp_path)

    message = resolve_error(spec)

    assert spec in message and "does not exist or is not a folder" in message
    assert hub.requests == [], "a path is never looked up on the Hub"


def test_file_is_not_a_folder(hub: FakeHub, base_model: Path) -> None:
    message = resolve_error(str(base_model / "config.json"))

    assert "is not a folder" in message
    assert hub.requests == []


@pytest.mark.parametrize("spec", ["runs/v1--best", "models/tiny..old", "model-"])
def test_neither_a_folder_nor_a_valid_hub_id(hub: FakeHub, spec: str) -> None:
    message = resolve_error(spec)

    assert spec in message and "Hub id" in message
    assert hub.requests == []


def test_local_non_longformer_config(hub: FakeHub, tmp_path: Path) -> None:
    folder = demo.make_base_model(tmp_path / "bert", tokenizer=False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))

    message = resolve_error(str(folder))

    assert "'bert'" in message and "not 'longformer'" in message


def test_local_config_that_is_not_json(hub: FakeHub, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")

    message = resolve_error(str(folder))

    assert "config.json is not valid JSON" in message


# -- end to end ---------------------------------------------------------------------------------------------------


def test_convert_with_a_hub_base_model(
    hub: FakeHub, cli: Callable[..., Any], checkpoints: dict[str, Path], base_model: Path, tmp_path: Path
) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"

    result = bounded(
        cli, "convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", REPO, "--report", report
    )

    assert result.exit_code == 0, result.output + result.stderr
    served = served_tokenizer_files(base_model)
    # the folder's tokenizer is the served one as transformers loads it, proven by the check's tokenizer stage
    check = json.loads((out / "conversion-report.json").read_text())["check"]
    stage = next(c for c in check["checks"] if c["name"] == "tokenizer")
    assert stage["passed"] is True and set(served) <= set(stage["files"])
    assert hub.requested_files(REPO) == {"config.json", *served}
    assert_no_weights_requested(hub)
    main = commit_id(REPO, "main")
    allowed = {f"/api/models/{REPO}/revision/main", f"/api/models/{REPO}/tree/{main}"}
    allowed |= {f"/{REPO}/resolve/{main}/{name}" for name in ["config.json", *served]}
    assert set(hub.paths) <= allowed, "nothing else is asked of the Hub"
    written = json.loads(report.read_text())["base_model"]
    assert written["spec"] == REPO
    assert written["commit"] == commit_id(REPO, "main")
    assert written["tokenizer_files"] == served


@pytest.mark.parametrize(
    ("name", "vocabulary"),
    [("longformer-chinese-bert-vocab", "vocab.txt"), ("xlm-roberta-longformer-base-4096", "sentencepiece.bpe.model")],
)
def test_hub_id_fetches_any_tokenizer_file(hub_home, base_model: Path, tmp_path: Path, name: str, vocabulary: str):
    # WordPiece's vocab.txt and sentencepiece's model are tokenizer files as much as tokenizer.json is
    from .public_models import BY_NAME, make_public_base

    tiny = json.loads((base_model / "config.json").read_text())
    folder = make_public_base(BY_NAME[name], tmp_path / name, tiny, tokenizer=True)
    fake = FakeHub()
    fake.add_repo(f"org/{name}", folder, lfs=WEIGHTS)
    with fake.running():
        hub_home(fake.url)
        base = resolve(f"org/{name}")
    served = {p.name for p in tokenizer_files(folder)}
    assert vocabulary in served and {p.name for p in base.tokenizer_files} == served
    assert fake.requested_files(f"org/{name}") == {"config.json", *served}
    assert_no_weights_requested(fake)
