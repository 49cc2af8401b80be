"""Folders transformers writes: a real ``Trainer``'s ``checkpoint-N/`` and ``save_pretrained``'s shards."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, LongformerConfig, LongformerForSequenceClassification

from longformer_action import demo
from longformer_action.reading.checkpoint import read_checkpoint

from .helpers import one_error_line
from .test_convert import saved_tensors

TRAINER_FILES = {
    "config.json",
    "model.safetensors",
    "optimizer.pt",
    "rng_state.pth",
    "scheduler.pt",
    "trainer_state.json",
    "training_args.bin",
}


def _report(folder: Path) -> dict:
    return json.loads((folder / "conversion-report.json").read_text())


def test_a_trainer_checkpoint_folder_converts_exactly(cli, trainer_output, base_model, tmp_path):
    folder = trainer_output / "checkpoint-2"
    assert {p.name for p in folder.iterdir()} == TRAINER_FILES, "what transformers' Trainer writes"
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", folder, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    source = load_file(folder / "model.safetensors")
    saved = saved_tensors(out)
    assert set(saved) == set(source) and all(torch.equal(saved[k], v) for k, v in source.items())
    report = _report(out)
    assert report["source"]["generation"] == "transformers" and report["source"]["global_step"] == 2
    assert report["source"]["path"] == str(folder) and report["source"]["epoch"] == 1
    assert report["task"] == "text-classification" and report["check"]["passed"]
    assert report["conversion"]["id2label"] == {"0": "NEG", "1": "NEU", "2": "POS"}
    assert report["conversion"]["labels_from"] == "hyper-parameter 'config.json.id2label'"
    assert report["source"]["placeholders"] == []
    # the folder loads with the same outputs as the Trainer's own model
    ids = torch.randint(5, 300, (1, 40), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = AutoModelForSequenceClassification.from_pretrained(folder).eval()(input_ids=ids).logits
        got = AutoModelForSequenceClassification.from_pretrained(out).eval()(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert cli("verify", "--model", out, "--checkpoint", folder).exit_code == 0


def test_the_trainers_pickles_are_never_opened(cli, trainer_output, base_model, tmp_path):
    """training_args.bin, optimizer.pt and the rest are replaced by payloads that would leave a mark: even
    with --trust-checkpoint none runs, because none is read."""
    folder = tmp_path / "checkpoint-2"
    shutil.copytree(trainer_output / "checkpoint-2", folder)
    mark = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {mark}",))

    for name in ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).write_bytes(pickle.dumps(Payload()))
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", folder, "--output", out, "--base-model", base_model, "--trust-checkpoint")
    assert result.exit_code == 0, result.stderr
    assert not mark.exists()
    line = one_error_line(cli("inspect", "--checkpoint", folder / "training_args.bin"))
    assert "is the TrainingArguments (a pickle), not the model" in line and f"--checkpoint {folder}" in line
    assert not mark.exists()


def test_the_trainers_output_folder_names_its_checkpoints(cli, trainer_output, base_model, tmp_path):
    line = one_error_line(cli("convert", "--checkpoint", trainer_output, "--output", tmp_path / "m"))
    assert "is a transformers Trainer's output folder (checkpoints: checkpoint-2)" in line
    assert f"--checkpoint {trainer_output / 'checkpoint-2'} is the latest" in line
    result = cli(
        "convert", "--checkpoint", trainer_output / "checkpoint-2", "--output", tmp_path / "m", "--base-model",
        base_model,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr


def test_its_config_json_is_the_recorded_config(cli, trainer_output, tmp_path):
    folder = trainer_output / "checkpoint-2"
    wider = demo.make_base_model(tmp_path / "wider", tokenizer=False, attention_window=16)
    out = tmp_path / "model"
    line = one_error_line(cli("convert", "--checkpoint", folder, "--output", out, "--base-model", wider))
    assert "attention_window is [8, 8] in the checkpoint's config.json but 16 in the base config" in line
    assert "--base-model hparams" in line and not out.exists()
    result = cli("convert", "--checkpoint", folder, "--output", out, "--base-model", "hparams")
    assert result.exit_code == 0, result.stderr
    assert _report(out)["base_model"]["spec"] == "hparams"


def test_pytorch_model_bin_goes_through_the_safety_tiers(cli, trainer_output, base_model, tmp_path):
    """transformers before 5 saved pytorch_model.bin (torch.save of the state dict) where it now saves safetensors."""
    folder = tmp_path / "checkpoint-2"
    shutil.copytree(trainer_output / "checkpoint-2", folder)
    source = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(source, folder / "pytorch_model.bin")
    ckpt = read_checkpoint(folder)
    assert ckpt.loader == "weights-only" and ckpt.file_format == "zip"
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", folder, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    assert all(torch.equal(saved_tensors(out)[k], v) for k, v in source.items())

    mark = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {mark}",))

    torch.save({**source, "classifier.dense.bias": Payload()}, folder / "pytorch_model.bin")
    line = one_error_line(cli("convert", "--checkpoint", folder, "--output", out.with_name("m2"), "--base-model",
                              base_model))  # fmt: skip
    assert "is not a state dict" in line and not mark.exists()


@pytest.fixture(scope="module")
def sharded(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``save_pretrained`` of a tiny trained classifier with shards of at most 60 kB."""
    folder = tmp_path_factory.mktemp("sharded") / "model"
    config = LongformerConfig.from_pretrained(base_model, num_labels=3)
    torch.manual_seed(1)
    LongformerForSequenceClassification(config).save_pretrained(folder, max_shard_size="60KB")
    return folder


def test_save_pretrained_shards_convert_exactly(cli, sharded, base_model, tmp_path):
    shards = sorted(p.name for p in sharded.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (sharded / "model.safetensors.index.json").is_file()
    source = {k: v for name in shards for k, v in load_file(sharded / name).items()}
    for given in (sharded, sharded / shards[-1]):  # the folder, or any shard of it
        out = tmp_path / given.name
        result = cli("convert", "--checkpoint", given, "--output", out, "--base-model", base_model)
        assert result.exit_code == 0, result.stderr
        saved = saved_tensors(out)
        assert set(saved) == set(source) and all(torch.equal(saved[k], v) for k, v in source.items())
        assert _report(out)["source"]["path"] == str(sharded)


def test_a_shard_listed_but_missing(cli, sharded, base_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(sharded, folder)
    missing = sorted(folder.glob("model-*-of-*.safetensors"))[0]
    missing.unlink()
    line = one_error_line(
        cli("convert", "--checkpoint", folder, "--output", tmp_path / "m", "--base-model", base_model)
    )
    assert f"lacks {missing.name}, which its model.safetensors.index.json lists" in line
    assert "Copy the whole folder again" in line and not (tmp_path / "m").exists()
