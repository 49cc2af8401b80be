"""Every task converts and checks against base folders made from public models' own files.

Each public model of ``tests/public_models.py`` becomes two base folders, sizes shrunk to the tiny
checkpoints': the config alone, and with tokenizer files. Every task's session checkpoint (one Trainer
run per task) is converted against each and checked, and the folder's tokenizer and generation
settings are compared with what transformers loads from the base.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig

from longformer_action.checking.inputs import SAMPLE_CONTEXT, SAMPLE_TEXT, SAMPLE_UNICODE
from longformer_action.reading.base_model import tokenizer_files
from longformer_action.writing import tokenizer as writer

from .conftest import FORMS, LONGFORMER_TASKS
from .helpers import one_error_line
from .public_models import BY_NAME, PUBLIC_MODELS

#: (model, form, task): every task of the model's family. LED's feature extraction converts the LED
#: checkpoint with ``--task feature-extraction``.
CASES = [
    (m.name, form, task)
    for m in PUBLIC_MODELS
    for form in FORMS
    for task in (LONGFORMER_TASKS if m.family == "longformer" else ("text2text-generation", "led-feature-extraction"))
]
#: The legacy vocabulary files each kind of tokenizer gets beside tokenizer.json.
LEGACY = {"bpe": {"vocab.json", "merges.txt"}, "wordpiece": {"vocab.txt"}, "sentencepiece": {"sentencepiece.bpe.model"}}


def _named(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["check"]["checks"]}


@pytest.mark.parametrize(("name", "form", "task"), CASES, ids=["-".join(c) for c in CASES])
def test_every_task_converts_and_checks(public_folders, public_bases, name, form, task):
    out, result = public_folders[(name, form, task)]
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["check"]["passed"] is True and not report["check"]["failures"]
    named = _named(report)
    if form == "config-only":
        assert named["tokenizer"]["passed"] is None and named["tokenizer"]["files"] == []
        assert tokenizer_files(out) == [], "no tokenizer is made up"
        assert report["conversion"]["tokenizer"] is None
    else:
        assert named["tokenizer"]["passed"] is True, named["tokenizer"]
        assert LEGACY[BY_NAME[name].tokenizer] <= {p.name for p in tokenizer_files(out)}
    generates = task == "text2text-generation"
    assert ("generation settings" in named) is generates
    assert (out / "generation_config.json").is_file() is generates
    if generates:
        assert named["generation settings"]["passed"] is True, named["generation settings"]
    assert named["recorded config"]["passed"] is None, "the demo modules record no config field"
    config = json.loads((out / "config.json").read_text())
    assert config["torch_dtype"] == config["dtype"] == "float32"


@pytest.mark.parametrize("name", [m.name for m in PUBLIC_MODELS])
def test_the_folder_tokenizer_is_the_base_tokenizer(public_folders, public_bases, name):
    task = "text2text-generation" if BY_NAME[name].family == "led" else "feature-extraction"
    out, result = public_folders[(name, "with-tokenizer", task)]
    assert result.exit_code == 0, result.stderr
    base, folder = (AutoTokenizer.from_pretrained(p) for p in (public_bases[(name, "with-tokenizer")], out))
    assert type(folder) is type(base) and len(folder) == len(base) > 30
    for text in (SAMPLE_TEXT, SAMPLE_UNICODE, f"Paris is {base.mask_token}."):
        assert folder(text)["input_ids"] == base(text)["input_ids"]
        assert folder.decode(folder(text)["input_ids"]) == base.decode(base(text)["input_ids"])
    words = folder(SAMPLE_TEXT, add_special_tokens=False)["input_ids"]
    assert words.count(folder.unk_token_id) < len(words) // 4, "words map to tokens, not to the unknown token"
    written = json.loads((out / "tokenizer_config.json").read_text())
    # stated for older readers; WordPiece's decoder cleans up spaces itself, so it says so (the same text)
    cleanup = BY_NAME[name].tokenizer == "wordpiece" or base.clean_up_tokenization_spaces
    assert written["clean_up_tokenization_spaces"] is cleanup


def test_a_bert_vocabulary_keeps_its_vocab_txt(public_folders, public_bases):
    # a BERT-vocabulary Longformer ships vocab.txt, tokenizer_config.json and special_tokens_map.json only
    base = public_bases[("longformer-chinese-bert-vocab", "with-tokenizer")]
    assert {p.name for p in tokenizer_files(base)} == {
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    out, result = public_folders[("longformer-chinese-bert-vocab", "with-tokenizer", "fill-mask")]
    assert result.exit_code == 0, result.stderr
    assert (out / "vocab.txt").read_text().splitlines() == (base / "vocab.txt").read_text().splitlines()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(tokenizer).__name__ == "BertTokenizer" and len(tokenizer) == len(
        (base / "vocab.txt").read_text().split()
    )
    assert tokenizer.convert_ids_to_tokens(tokenizer("埃菲尔铁塔")["input_ids"]) == [
        "[CLS]",
        "埃",
        "菲",
        "尔",
        "铁",
        "塔",
        "[SEP]",
    ]


def test_model_max_length_is_capped_to_the_positions(public_folders, public_bases):
    from transformers import pipeline

    base = public_bases[("longformer-base-4096", "with-tokenizer")]
    out, result = public_folders[("longformer-base-4096", "with-tokenizer", "text-classification")]
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    positions = config["max_position_embeddings"] - config["pad_token_id"] - 1
    assert AutoTokenizer.from_pretrained(base).model_max_length == writer.UNSET_MAX_LENGTH
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == positions == 256
    facts = json.loads((out / "conversion-report.json").read_text())["conversion"]["tokenizer"]["model_max_length"]
    assert facts == {"base": None, "saved": 256, "positions": 256, "capped": True}
    assert "`model_max_length` capped from unset to 256" in (out / "README.md").read_text()

    long_text = " ".join([SAMPLE_CONTEXT] * 40)
    classify = pipeline("text-classification", model=str(out))
    assert len(classify(long_text, truncation=True)) == 1
    with pytest.raises(IndexError):  # the base's own tokenizer, uncapped, overruns the position table
        pipeline("text-classification", model=str(out), tokenizer=AutoTokenizer.from_pretrained(base))(
            long_text, truncation=True
        )


def test_the_tokenizer_config_model_max_length_is_capped(public_folders):
    # tokenizer_config.json says 4096; the shrunk positions leave 256
    out, result = public_folders[("xlm-roberta-longformer-base-4096", "with-tokenizer", "fill-mask")]
    assert result.exit_code == 0, result.stderr
    assert AutoTokenizer.from_pretrained(out).model_max_length == 256
    assert "`model_max_length` capped from 4096 to 256" in (out / "README.md").read_text()


def test_led_generation_settings_from_config_json(public_folders, public_bases):
    from transformers import LEDForConditionalGeneration

    base = public_bases[("led-large-16384-arxiv", "with-tokenizer")]
    assert not (base / "generation_config.json").exists(), "arXiv's LED keeps them in config.json"
    out, result = public_folders[("led-large-16384-arxiv", "with-tokenizer", "text2text-generation")]
    assert result.exit_code == 0, result.stderr
    written = json.loads((out / "generation_config.json").read_text())
    assert "_from_model_config" not in written
    expected = {
        "num_beams": 4,
        "max_length": 32,  # 512 scaled with the decoder's positions (1024 -> 64)
        "min_length": 6,  # 100 scaled the same way
        "no_repeat_ngram_size": 3,
        "length_penalty": 2.0,
        "early_stopping": True,
    }
    assert {k: written[k] for k in expected} == expected
    model = LEDForConditionalGeneration.from_pretrained(out)
    assert {k: getattr(model.generation_config, k) for k in expected} == expected
    assert GenerationConfig.from_pretrained(out).num_beams == 4
    facts = json.loads((out / "conversion-report.json").read_text())["conversion"]["generation"]
    assert facts["source"] == "config.json" and facts["settings"]["num_beams"] == 4
    assert "`num_beams` 4" in (out / "README.md").read_text()


def test_led_generation_config_is_kept_without_from_model_config(public_folders, public_bases):
    base = public_bases[("led-base-16384", "config-only")]
    assert json.loads((base / "generation_config.json").read_text())["_from_model_config"] is True
    out, result = public_folders[("led-base-16384", "config-only", "text2text-generation")]
    assert result.exit_code == 0, result.stderr
    written = json.loads((out / "generation_config.json").read_text())
    assert "_from_model_config" not in written
    assert {k: written[k] for k in ("bos_token_id", "decoder_start_token_id", "eos_token_id", "pad_token_id")} == {
        "bos_token_id": 0,
        "decoder_start_token_id": 2,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def test_the_check_runs_the_folder_on_the_base_tokenizer_ids(public_folders):
    # the forward pass used the tokenizer: the inputs are words of the sample, not random ids
    out, _ = public_folders[("longformer-chinese-bert-vocab", "with-tokenizer", "token-classification")]
    inputs = json.loads((out / "conversion-report.json").read_text())["check"]["inputs"]
    assert inputs["tokenizer"] is True
    assert torch.tensor(inputs["lengths"]).max() <= 256


# --- a folder whose tokenizer or generation settings differ from the base's fails the check (exit 3) -------------


def _tampered(public_folders, key, tmp_path) -> Path:
    out, result = public_folders[key]
    assert result.exit_code == 0, result.stderr
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    return copy


def _verify(cli, folder, key, public_bases, task_checkpoints):
    name, form, task = key
    checkpoint = task_checkpoints["text2text-generation" if task.startswith("led-") else task][0]
    return cli("verify", "--model", folder, "--checkpoint", checkpoint, "--base-model", public_bases[(name, form)])


def test_a_tokenizer_that_encodes_otherwise_fails_the_check(
    cli, public_folders, public_bases, task_checkpoints, tmp_path
):
    key = ("longformer-chinese-bert-vocab", "with-tokenizer", "fill-mask")
    folder = _tampered(public_folders, key, tmp_path)
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["巴"], vocab["黎"] = vocab["黎"], vocab["巴"]  # two words' ids swapped
    (folder / "tokenizer.json").write_text(json.dumps(data))

    result = _verify(cli, folder, key, public_bases, task_checkpoints)
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "tokenizer.json: input_ids of the non-ASCII text differ (position" in line


def test_legacy_files_without_the_added_tokens_fail_the_check(
    cli, public_folders, public_bases, task_checkpoints, tmp_path
):
    # without added_tokens_decoder, a loader reading vocab.json and merges.txt alone gives <mask> no lstrip
    key = ("led-large-16384", "with-tokenizer", "text2text-generation")
    folder = _tampered(public_folders, key, tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["added_tokens_decoder"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))

    result = _verify(cli, folder, key, public_bases, task_checkpoints)
    assert result.exit_code == 3
    assert "merges.txt, vocab.json: input_ids of the text with a mask differ" in one_error_line(result)


def test_generation_settings_that_differ_fail_the_check(cli, public_folders, public_bases, task_checkpoints, tmp_path):
    key = ("led-large-16384-arxiv", "with-tokenizer", "text2text-generation")
    folder = _tampered(public_folders, key, tmp_path)
    settings = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**settings, "num_beams": 1}))

    result = _verify(cli, folder, key, public_bases, task_checkpoints)
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "generation_config.json: num_beams is 1 where the base's generation settings have 4" in line


def test_the_unchanged_folder_verifies(cli, public_folders, public_bases, task_checkpoints):
    key = ("led-large-16384-arxiv", "with-tokenizer", "text2text-generation")
    out, _ = public_folders[key]
    result = _verify(cli, out, key, public_bases, task_checkpoints)
    assert result.exit_code == 0, result.stderr
