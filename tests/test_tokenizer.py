"""The folder's tokenizer: loaded from the base with AutoTokenizer, saved by transformers, length capped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer, LEDConfig, LongformerConfig

from longformer_action import demo
from longformer_action.checking.inputs import SAMPLE_CONTEXT
from longformer_action.checking.tokenizer import check_max_length
from longformer_action.errors import BaseModelError
from longformer_action.reading.base_model import tokenizer_files
from longformer_action.writing import tokenizer as writer

from .helpers import one_error_line
from .public_models import BY_NAME, make_public_base


def _base_with_length(folder: Path, max_length: int, **config) -> Path:
    demo.make_base_model(folder, **config)
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model_max_length": max_length}))
    return folder


def test_model_max_length_is_capped_to_the_positions(tmp_path):
    # 130 positions with padding id 1 leave 128 tokens; the tokenizer says 4096
    base = _base_with_length(tmp_path / "base", 4096, max_position_embeddings=130)
    config = LongformerConfig.from_pretrained(base)
    assert writer.usable_positions(config) == 128
    tokenizer = writer.load_base_tokenizer(base, tokenizer_files(base), config)
    out = tmp_path / "out"
    out.mkdir()
    facts = writer.write_tokenizer(tokenizer, out, config)
    assert (facts.base_max_length, facts.saved_max_length, facts.capped) == (4096, 128, True)
    saved = AutoTokenizer.from_pretrained(out)
    assert saved.model_max_length == 128
    assert len(saved(" ".join([SAMPLE_CONTEXT] * 20), truncation=True)["input_ids"]) == 128
    assert check_max_length(saved, 4096, 128) == []
    uncapped = check_max_length(AutoTokenizer.from_pretrained(base), 4096, 128)
    assert uncapped[0] == (
        "tokenizer_config.json: model_max_length is 4096 where the model's positions allow 128 (the base's is 4096)"
    )
    assert uncapped[1].startswith("tokenizer_config.json: truncation=True keeps ")
    assert uncapped[1].endswith("tokens of a long text, more than the 128 positions the model can use")


def test_a_shorter_model_max_length_is_kept(tmp_path):
    base = _base_with_length(tmp_path / "base", 64)
    config = LongformerConfig.from_pretrained(base)
    tokenizer = writer.load_base_tokenizer(base, tokenizer_files(base), config)
    facts = writer.write_tokenizer(tokenizer, tmp_path, config)
    assert (facts.saved_max_length, facts.capped) == (64, False)


def test_led_positions_are_the_encoders():
    config = LEDConfig(max_encoder_position_embeddings=256, max_decoder_position_embeddings=64, pad_token_id=1)
    assert writer.usable_positions(config) == 256


def test_tokenizer_files_are_found_by_what_they_are(tmp_path):
    for name in ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "merges.txt", "x.bin"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in tokenizer_files(tmp_path)] == [
        "merges.txt",
        "sentencepiece.bpe.model",
        "spiece.model",
        "tokenizer.json",
        "vocab.txt",
    ]


def test_tokenizer_files_that_do_not_load_are_an_error(cli, checkpoints, base_model, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(base_model, base)
    (base / "tokenizer.json").write_text("{not json")
    out = tmp_path / "out"
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "the base model's tokenizer files (tokenizer.json, tokenizer_config.json) do not load" in line
    assert not out.exists(), "no folder without its tokenizer"


def test_a_tokenizer_class_that_does_not_read_the_vocabulary_is_an_error(base_model, tmp_path):
    # sentencepiece.bpe.model beside a tokenizer_config.json without tokenizer_class: AutoTokenizer takes the
    # Longformer's class from config.json, which reads vocab.json, and gets only the five special tokens
    tiny = json.loads((base_model / "config.json").read_text())
    base = make_public_base(BY_NAME["xlm-roberta-longformer-base-4096"], tmp_path / "xlmr", tiny, tokenizer=True)
    (base / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    config = LongformerConfig.from_pretrained(base)
    with pytest.raises(BaseModelError) as info:
        writer.load_base_tokenizer(base, tokenizer_files(base), config)
    message = info.value.format_message()
    assert "(sentencepiece.bpe.model, special_tokens_map.json, tokenizer_config.json)" in message
    assert "only its special tokens" in message and "XLMRobertaTokenizer for sentencepiece.bpe.model" in message


def test_a_tokenizer_larger_than_the_vocabulary_is_an_error(base_model, tmp_path):
    config = LongformerConfig.from_pretrained(base_model, vocab_size=100)
    with pytest.raises(BaseModelError, match=r"has \d+ tokens but config.json's vocab_size is 100"):
        writer.load_base_tokenizer(base_model, tokenizer_files(base_model), config)
