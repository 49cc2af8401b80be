"""The model card's Hub metadata (``publishing/card.py``): ``base_model`` and its revision for a Hub base model, and
what Lightning's ``ModelCheckpoint`` recorded: the monitored metric, the run's best score, the score of these
weights, and the ``model-index`` entry when the metric is one the Hub knows.

The checkpoint is a real Trainer's, saved by two ``ModelCheckpoint`` callbacks (``monitored_run``); the base model
is served by the fake Hub of ``tests/fake_hub.py``, so that ``--base-model`` is a Hub id, and the card is pushed to
it, whose ``validate-yaml`` checks the ``model-index`` as the Hub's card schema does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from longformer_action.reading.unpickling import load_tiers

from .fake_hub import FakeHub, _card_errors, serving
from .monitored import below_best

WRITE = "hf_alice_write_Pc61uR"


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with serving(monkeypatch, tmp_path / "hf-home", write=WRITE, read="hf_read_Zk3", bob="hf_bob_Qe8") as fake:
        yield fake


def test_the_card_names_the_hub_base_and_what_model_checkpoint_recorded(
    hub: FakeHub, cli, monitored_run, base_model: Path, tmp_path: Path
) -> None:
    from huggingface_hub import ModelCard

    base = hub.add_repo("org/tiny-longformer", base_model)
    checkpoint = below_best(monitored_run)  # not the run's best weights: the card gives both scores
    callbacks = load_tiers(checkpoint, "zip", trust=False)[0]["callbacks"]
    acc, loss = (next(v for k, v in callbacks.items() if f"'monitor': '{m}'" in k) for m in ("val_acc", "val_loss"))
    out = tmp_path / "model"

    result = cli(
        "convert", "--checkpoint", checkpoint, "--base-model", "org/tiny-longformer", "--revision", "main",
        "--output", out,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    text = (out / "README.md").read_text()
    card = ModelCard(text)
    assert (card.data.base_model, card.data.library_name, card.data.pipeline_tag) == (
        "org/tiny-longformer",
        "transformers",
        "text-classification",
    )
    head = base.refs["main"]
    assert (
        "| base model (config, tokenizer) | [`org/tiny-longformer`](https://huggingface.co/org/tiny-longformer) at "
        f"revision `main`, commit `{head}` |" in text
    )
    file_score = acc["best_k_models"][str(checkpoint)].item()
    best = acc["best_model_score"].item()
    assert file_score < best
    best_name = Path(acc["best_model_path"]).name
    assert (
        f"| monitored metric (ModelCheckpoint) | `val_acc`, max: best {best:.4g} (`{best_name}`); these weights: "
        f"{file_score:.4g} |" in text
    )
    assert f"`val_loss`, min: best {loss['best_model_score'].item():.4g}" in text, "a loss is shown in the text"
    (accuracy,) = card.data.eval_results  # the loss has no model-index entry
    assert (accuracy.metric_type, accuracy.metric_name, accuracy.metric_value) == ("accuracy", "val_acc", file_score)
    assert (accuracy.dataset_type, accuracy.dataset_split, accuracy.task_type) == (
        "unnamed",
        "validation",
        "text-classification",
    )
    assert card.data.model_name == checkpoint.stem
    assert _card_errors(text) == ([], []), "what the Hub's card schema requires"
    report = json.loads((out / "conversion-report.json").read_text())
    recorded = report["source"]["model_checkpoints"]
    assert [(m["callback"], m["monitor"], m["mode"]) for m in recorded] == [
        ("ModelCheckpoint", "val_acc", "max"),
        ("ModelCheckpoint", "val_loss", "min"),
    ]
    assert (recorded[0]["best_score"], recorded[0]["file_score"]) == (best, file_score)

    pushed = cli("push", "--model", out, "--repo-id", "org/classifier", env={"HF_TOKEN": WRITE})
    assert pushed.exit_code == 0, pushed.stderr
    assert hub.repos["org/classifier"].files_at("refs/pr/1")["README.md"] == text.encode()
    assert [r.status for r in hub.calls("validate-yaml")] == [200], "the Hub's validation accepted the card"


def test_a_card_without_model_checkpoint_state_has_no_model_index(converted_folders) -> None:
    from huggingface_hub import ModelCard

    text = (converted_folders["text-classification"] / "README.md").read_text()
    card = ModelCard(text)

    assert card.data.eval_results is None and "model-index" not in text and "monitored metric" not in text
    assert card.data.base_model is None, "a local base folder is no Hub id"
    assert "| base model (config, tokenizer) | a local folder, `tiny-longformer` |" in text
