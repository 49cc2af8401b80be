"""Lightning's ``ModelCheckpoint`` state read from real checkpoints (``reading/callbacks.py``), and the Hub card's
``model-index`` entry made from it.

A tiny text classifier is trained for four epochs by a real ``Trainer`` with two real ``ModelCheckpoint``
callbacks (``tests/monitored.py``, once per test run): one keeps every epoch's file by ``val_acc`` (a real accuracy
on a validation batch, written into the file name by Lightning too), the other the best by ``val_loss``; the files
are read back with the project's own loader.
"""

from __future__ import annotations

import copy
import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from longformer_action.publishing.model_index import UNNAMED_DATASET_TYPE, KnownMetric, eval_result, known_metric
from longformer_action.reading.callbacks import ModelCheckpointState, model_checkpoint_states
from longformer_action.reading.unpickling import Inert, load_tiers

from .fake_hub import _model_index_errors
from .monitored import EPOCHS, below_best, named_score, step_of


def read(path: Path) -> dict[str, Any]:
    """The checkpoint dict as the converter reads it (weights-only, else the restricted unpickler)."""
    obj, _, _ = load_tiers(path, "zip", trust=False)
    return obj


def by_monitor(states: list[ModelCheckpointState], monitor: str) -> ModelCheckpointState:
    return next(s for s in states if s.monitor == monitor)


def test_every_top_k_file_knows_its_own_score_and_the_best(monitored_run) -> None:
    saved = sorted(monitored_run["acc"].glob("epoch=*.ckpt"), key=step_of)
    assert len(saved) == EPOCHS and len({named_score(p) for p in saved}) > 1, "the scores move between epochs"

    for path in saved:
        states = model_checkpoint_states(read(path), file_name=path.name)

        assert [(s.callback, s.monitor, s.mode) for s in states] == [
            ("ModelCheckpoint", "val_acc", "max"),
            ("ModelCheckpoint", "val_loss", "min"),
        ]
        acc = by_monitor(states, "val_acc")
        assert acc.file_score == pytest.approx(named_score(path), abs=5e-5), "the score in Lightning's file name"
        assert acc.best_score == pytest.approx(max(named_score(p) for p in saved if step_of(p) <= step_of(path)))
    final = by_monitor(model_checkpoint_states(read(saved[-1]), file_name=saved[-1].name), "val_acc")
    assert final.best_score == monitored_run["acc_best_score"], "the last top-k save holds the run's best"
    assert final.best_model_path == monitored_run["acc_best_name"]
    assert dict(final.top_k) == {name: pytest.approx(s) for name, s in monitored_run["acc_top_k"].items()}


def test_last_ckpt_and_renamed_copies_are_found_by_their_step(monitored_run, tmp_path: Path) -> None:
    final, dipped = max(monitored_run["acc"].glob("epoch=*.ckpt"), key=step_of), below_best(monitored_run)
    copies = {
        monitored_run["acc"] / "last.ckpt": final,
        Path(shutil.copy(final, tmp_path / "best.ckpt")): final,
        Path(shutil.copy(dipped, tmp_path / "model.ckpt")): dipped,
    }

    for path, original in copies.items():
        state = by_monitor(model_checkpoint_states(read(path), file_name=path.name), "val_acc")
        assert state.file_score == pytest.approx(named_score(original), abs=5e-5), path.name
    state = by_monitor(model_checkpoint_states(read(dipped), file_name="model.ckpt"), "val_acc")
    assert state.file_score < state.best_score, "not the best weights: their own score, not the best"


def test_a_file_whose_weights_match_no_saved_score_has_none(monitored_run) -> None:
    path = monitored_run["acc"] / "last.ckpt"
    later = {**read(path), "global_step": 999}  # weights trained past every saved evaluation

    state = by_monitor(model_checkpoint_states(later, file_name="final-weights.ckpt"), "val_acc")

    assert state.file_score is None and state.best_score is not None, "the run's best is still reported"
    assert eval_result(state.monitor, state.file_score, task_type="text-classification") is None, (
        "no score is claimed for these weights"
    )


def test_the_model_index_entry_is_a_self_reported_score_on_unnamed_data(monitored_run) -> None:
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    path = below_best(monitored_run)
    state = by_monitor(model_checkpoint_states(read(path), file_name=path.name), "val_acc")
    assert state.file_score is not None and state.best_score is not None and state.file_score < state.best_score

    result = eval_result(state.monitor, state.file_score, task_type="text-classification")

    assert (result.metric_type, result.metric_value, result.metric_name) == ("accuracy", state.file_score, "val_acc")
    assert (result.dataset_type, result.dataset_split) == (UNNAMED_DATASET_TYPE, "validation")
    assert result.dataset_name == "the training run's validation data (the checkpoint does not name it)"
    assert result.verified is None and result.task_name == "Text Classification"
    index = ModelCardData(model_name="tiny-classifier", eval_results=[result]).to_dict()["model-index"]
    assert _model_index_errors(index) == [], "what the Hub's card schema requires"
    assert model_index_to_eval_results(index) == ("tiny-classifier", [result])

    named = eval_result(
        state.monitor,
        state.file_score,
        task_type="text-classification",
        dataset_type="acme/reviews",
        dataset_name="Reviews",
    )
    assert (named.dataset_type, named.dataset_name) == ("acme/reviews", "Reviews")


def test_a_loss_is_not_put_in_the_model_index(monitored_run) -> None:
    path = next(monitored_run["loss"].glob("*.ckpt"))
    state = by_monitor(model_checkpoint_states(read(path), file_name=path.name), "val_loss")

    assert state.mode == "min" and state.file_score == pytest.approx(monitored_run["loss_best_score"])
    assert eval_result(state.monitor, state.file_score, task_type="text-classification") is None


def test_lightning_1_0_keys_the_state_by_the_class(monitored_run, tmp_path: Path) -> None:
    """Lightning's own migration rebuilds 1.0-1.4's layout from 0.x's keys: ``callbacks`` keyed by the class."""
    from pytorch_lightning.utilities.migration.migration import _migrate_model_checkpoint_early_stopping

    source = read(sorted(monitored_run["acc"].glob("epoch=*.ckpt"), key=step_of)[-1])
    old = {k: v for k, v in source.items() if k != "callbacks"}
    best = torch.tensor(monitored_run["acc_best_score"])
    old |= {"checkpoint_callback_best_model_score": best, "checkpoint_callback_best_model_path": "x"}
    migrated = _migrate_model_checkpoint_early_stopping(copy.copy(old))
    path = tmp_path / "lightning-1.0.ckpt"
    torch.save(migrated, path)

    obj, loader, replaced = load_tiers(path, "zip", trust=False)
    states = model_checkpoint_states(obj, file_name="x")

    assert loader == "restricted" and any(r.endswith(".ModelCheckpoint") for r in replaced)
    assert [(s.callback, s.monitor, s.mode) for s in states] == [("ModelCheckpoint", None, None)]
    assert states[0].best_score == best.item() == states[0].file_score


@pytest.mark.parametrize(
    ("keys", "callback", "score"),
    [
        ({"checkpoint_callback_best_model_score": torch.tensor(0.875)}, "checkpoint_callback_best_model_score", 0.875),
        ({"checkpoint_callback_best": 0.77}, "checkpoint_callback_best", 0.77),
        ({"checkpoint_callback_best": float("inf")}, "checkpoint_callback_best", None),
    ],
    ids=["lightning-0.8", "lightning-0.6", "never-saved"],
)
def test_lightning_0_x_top_level_keys(monitored_run, keys: dict[str, Any], callback: str, score: float | None) -> None:
    source = read(monitored_run["acc"] / "last.ckpt")
    old = {k: v for k, v in source.items() if k not in ("callbacks", "pytorch-lightning_version")} | keys

    states = model_checkpoint_states(old)

    assert [(s.callback, s.monitor, s.best_score) for s in states] == [(callback, None, score)]


def test_a_subclass_and_a_state_key_that_is_not_a_literal() -> None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    subclass = type("BestF1", (ModelCheckpoint,), {})  # a user's subclass: its state key carries its own name
    callback = subclass(monitor="val/f1", mode="max", train_time_interval=datetime.timedelta(hours=1))
    state = callback.state_dict() | {"best_model_score": torch.tensor(0.5), "best_model_path": "/runs/a/best.ckpt"}
    assert "datetime.timedelta" in callback.state_key

    (found,) = model_checkpoint_states({"callbacks": {callback.state_key: state}}, file_name="best.ckpt")

    assert (found.callback, found.monitor, found.mode, found.best_score) == ("BestF1", "val/f1", "max", 0.5)
    assert (found.best_model_path, found.file_score) == ("best.ckpt", 0.5)


def test_placeholders_and_other_callbacks_are_not_scores() -> None:
    placeholder = type("Weird", (Inert,), {"_qualname": "somewhere.Weird"})()
    key = "ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}"
    obj = {
        "callbacks": {
            "EarlyStopping{'monitor': 'val_acc', 'mode': 'max'}": {"best_score": torch.tensor(0.9), "patience": 3},
            key: {"monitor": "val_acc", "best_model_score": placeholder, "best_model_path": ""},
        }
    }

    assert model_checkpoint_states(obj) == [ModelCheckpointState("ModelCheckpoint", "val_acc", "max", None)]


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("val_f1", KnownMetric("f1", "validation")),
        ("val/acc", KnownMetric("accuracy", "validation")),
        ("valid_accuracy", KnownMetric("accuracy", "validation")),
        ("val_acc_epoch", KnownMetric("accuracy", "validation")),
        ("ptl/val_accuracy", KnownMetric("accuracy", "validation")),
        ("eval_rouge1", KnownMetric("rouge", "validation")),
        ("val/rougeLsum", KnownMetric("rouge", "validation")),
        ("val_f1_macro", KnownMetric("f1", "validation", {"average": "macro"})),
        ("validation/exact_match", KnownMetric("exact_match", "validation")),
        ("test_mcc_epoch", KnownMetric("matthews_correlation", "test")),
        ("dev-pearsonr", KnownMetric("pearsonr", "validation")),
        ("val_loss", None),
        ("val/loss_epoch", None),
        ("train_acc", None),
        ("acc", None),
        ("val_acc_vs_test_acc", None),
        ("val_hamming", None),
        (None, None),
    ],
)
def test_monitored_names_the_hub_knows(monitor: str | None, expected: KnownMetric | None) -> None:
    assert known_metric(monitor) == expected


def test_inspect_shows_what_each_model_checkpoint_recorded(monitored_run, cli) -> None:
    path = monitored_run["acc"] / "last.ckpt"

    text = cli("inspect", "--checkpoint", path)
    data = cli("inspect", "--checkpoint", path, "--json")

    best = monitored_run["acc_best_score"]
    (acc, loss) = json.loads(data.stdout)["model_checkpoints"]
    assert acc == {
        "callback": "ModelCheckpoint",
        "monitor": "val_acc",
        "mode": "max",
        "best_score": best,
        "best_model_path": monitored_run["acc_best_name"],
        "file_score": pytest.approx(named_score(max(monitored_run["acc"].glob("epoch=*.ckpt"), key=step_of)), abs=5e-5),
    }
    assert (loss["monitor"], loss["mode"]) == ("val_loss", "min") and loss["best_score"] is not None
    assert (
        f"monitored:     val_acc (max) by ModelCheckpoint: best {best:.4g} ({monitored_run['acc_best_name']}), this "
        f"file's weights {acc['file_score']:.4g}" in text.stdout
    )
