"""The hyper-parameters, read through any wrapper: the recorded config, the labels and ``problem_type``.

The LightningCLI checkpoint is written by a real ``LightningCLI`` and ``Trainer`` (see
``tests/lightning_cli.py``): its config sits under ``config`` as ``class_path``/``init_args``, beside
``_instantiator`` and ``_class_path``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import LongformerConfig, LongformerForQuestionAnswering

from longformer_action import demo
from longformer_action.errors import MappingError
from longformer_action.mapping.recorded import config_disagreements
from longformer_action.mapping.target import resolve_problem_type
from longformer_action.reading import hparams
from longformer_action.reading.checkpoint import read_checkpoint
from longformer_action.reading.hparams import labels_from_hparams, recorded_config, recorded_problem_type
from longformer_action.registry import tasks

from .helpers import one_error_line
from .lightning_cli import LABELS


def _checkpoint(tmp_path: Path, base_model: Path, **hyper_parameters) -> Path:
    state = LongformerForQuestionAnswering(LongformerConfig.from_pretrained(base_model)).state_dict()
    path = tmp_path / "h.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "hyper_parameters": hyper_parameters,
            "pytorch-lightning_version": "2.6.6",
            "epoch": 0,
            "global_step": 1,
        },
        path,
    )
    return path


def test_the_walk_sees_every_wrapper():
    deep = {"class_path": "transformers.LongformerConfig", "init_args": {"attention_window": [8, 8]}}
    values = {
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
        "_class_path": "my.Module",
        "args": argparse.Namespace(model={"encoder": deep}, callbacks=[{"class_path": "X", "init_args": {"k": 1}}]),
    }
    values["self"] = values  # a cycle is visited once
    found = {level.path: level.qualname for level in hparams.levels(values)}
    assert found == {
        "": "",
        "args": "argparse.Namespace",
        "args.model": "",
        "args.callbacks[0].init_args": "X",
        "args.model.encoder.init_args": "transformers.LongformerConfig",
    }
    assert hparams.first(values, "attention_window")[1].path == "args.model.encoder.init_args"


def test_the_walk_stops_at_its_depth():
    nested: dict = {"attention_window": [4, 4]}
    for name in "abcdefg":
        nested = {name: nested}
    assert hparams.first(nested, "attention_window") is None
    assert hparams.first(nested["g"], "attention_window") is not None  # six levels down


def test_a_pickled_config_three_levels_down(tmp_path, base_model):
    # an inert placeholder (the config object is never built) inside a Namespace inside a dict
    config = LongformerConfig.from_pretrained(base_model, attention_window=[16, 16])
    path = _checkpoint(tmp_path, base_model, run={"args": argparse.Namespace(model_config=config)})
    ckpt = read_checkpoint(path)
    assert ckpt.loader == "restricted"
    found = recorded_config(ckpt.hparams)
    assert found is not None and found[1] == "hyper-parameter 'run.args.model_config'"
    lines = config_disagreements(ckpt.hparams, LongformerConfig.from_pretrained(base_model))
    assert lines == ["attention_window is [16, 16] in hyper-parameter 'run.args.model_config' but 8 in the base config"]


def test_labels_and_problem_type_under_a_namespace(tmp_path, base_model):
    path = _checkpoint(
        tmp_path,
        base_model,
        cfg={"data": argparse.Namespace(label_names=["a", "b"], problem_type="multi_label_classification")},
    )
    ckpt = read_checkpoint(path)
    assert labels_from_hparams(ckpt.hparams) == (["a", "b"], "hyper-parameter 'cfg.data.label_names'")
    assert recorded_problem_type(ckpt.hparams) == (
        "multi_label_classification",
        "hyper-parameter 'cfg.data.problem_type'",
    )
    task = tasks.get("text-classification")
    assert resolve_problem_type(task, None, ckpt.hparams)[0] == "multi_label_classification"
    with pytest.raises(MappingError, match="--problem-type regression disagrees with hyper-parameter 'cfg.data"):
        resolve_problem_type(task, "regression", ckpt.hparams)
    assert resolve_problem_type(tasks.get("token-classification"), None, ckpt.hparams) == (None, "none")


def test_lightning_cli_hyper_parameters_as_written(lightning_cli_checkpoint):
    ckpt = read_checkpoint(lightning_cli_checkpoint)
    assert ckpt.loader == "weights-only", "LightningCLI writes plain containers"
    assert ckpt.hparams["_instantiator"] == "pytorch_lightning.cli.instantiate_module"
    assert ckpt.hparams["_class_path"] == "tests.lightning_cli.MultiLabelClassifier"
    assert ckpt.hparams["config"]["class_path"] == "transformers.LongformerConfig"
    config, where = recorded_config(ckpt.hparams)
    assert where == "hyper-parameter 'config.init_args'" and config["attention_window"] == [8, 8]


def test_lightning_cli_config_converts_with_its_labels_and_problem_type(
    cli, lightning_cli_checkpoint, base_model, tmp_path
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", lightning_cli_checkpoint, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert config["problem_type"] == "multi_label_classification"
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["conversion"]["labels_from"] == "hyper-parameter 'config.init_args.id2label'"
    assert report["conversion"]["problem_type_from"] == "hyper-parameter 'config.init_args.problem_type'"
    stage = next(c for c in report["check"]["checks"] if c["name"] == "recorded config")
    assert stage["passed"] is True
    assert "attention_window (hyper-parameter 'config.init_args')" in stage["detail"]
    assert "problem_type (hyper-parameter 'config.init_args.problem_type')" in stage["detail"]
    card = (out / "README.md").read_text()
    assert "`multi_label_classification` (from hyper-parameter 'config.init_args.problem_type')" in card
    assert "| recorded config | `config.json` | pass |" in card

    # a pipeline serves it with a sigmoid per label, as the module trained it
    text = demo.CORPUS[1]
    served = pipeline("text-classification", model=str(out), top_k=None)([text])[0]
    scores = {o["label"]: o["score"] for o in served}
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
    assert scores == pytest.approx({name: float(torch.sigmoid(logits[i])) for i, name in enumerate(LABELS)})


def test_lightning_cli_config_disagreeing_with_the_base_is_refused(cli, lightning_cli_checkpoint, tmp_path):
    base = demo.make_base_model(tmp_path / "base16", attention_window=16)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", lightning_cli_checkpoint, "--output", out, "--base-model", base)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "attention_window is [8, 8] in hyper-parameter 'config.init_args' but 16 in the base config" in line
    assert "--base-model hparams" in line
    assert not out.exists()


def test_problem_type_disagreeing_with_the_hyper_parameters_is_refused(
    cli, lightning_cli_checkpoint, base_model, tmp_path
):
    args = ["convert", "--checkpoint", lightning_cli_checkpoint, "--output", tmp_path / "m", "--base-model", base_model]
    result = cli(*args, "--problem-type", "regression")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "--problem-type regression disagrees with hyper-parameter 'config.init_args.problem_type'" in line
    assert "'multi_label_classification'" in line
    assert cli(*args, "--problem-type", "multi_label_classification").exit_code == 0


def test_a_folder_config_changed_against_the_recorded_one_fails_the_check(
    cli, lightning_cli_checkpoint, base_model, tmp_path
):
    out = tmp_path / "model"
    assert (
        cli("convert", "--checkpoint", lightning_cli_checkpoint, "--output", out, "--base-model", base_model).exit_code
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "attention_window": [16, 16]}))

    result = cli("verify", "--model", out, "--checkpoint", lightning_cli_checkpoint, "--base-model", base_model)
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "config.json: attention_window is [16, 16] where hyper-parameter 'config.init_args' records [8, 8]" in line
