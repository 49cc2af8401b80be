"""The check's end-to-end sample line (``checking/smoke.py``), on tiny models loaded as the folder's are."""

from __future__ import annotations

import re

import torch
from transformers import (
    AutoTokenizer,
    LongformerConfig,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
)

from longformer_action.checking.inputs import SAMPLE_TEXT
from longformer_action.checking.smoke import smoke_test
from longformer_action.registry.tasks import get


def test_a_taggers_sample_shows_the_tokens_as_text(base_model):
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    config = LongformerConfig.from_pretrained(base_model, id2label={0: "O", 1: "B-LOC", 2: "I-LOC"})
    torch.manual_seed(0)
    model = LongformerForTokenClassification(config).eval()
    raw = tokenizer.convert_ids_to_tokens(tokenizer(" Eiffel")["input_ids"])
    assert any(t.startswith("Ġ") for t in raw), "byte-level BPE marks a leading space in its raw tokens"

    line = smoke_test(get("token-classification"), model, tokenizer)["output"]

    words = re.findall(r"'([^']*)': [BI]-LOC", line)
    assert words and "Ġ" not in line, line
    assert all(word in SAMPLE_TEXT for word in words), (words, SAMPLE_TEXT)


def test_a_multi_label_sample_shows_every_label_above_one_half(base_model):
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    labels = {0: "sports", 1: "politics", 2: "tech"}
    config = LongformerConfig.from_pretrained(base_model, id2label=labels, problem_type="multi_label_classification")
    model = LongformerForSequenceClassification(config).eval()
    with torch.no_grad():  # sigmoid(4) = 0.98 for politics and tech, sigmoid(-4) for sports, whatever the input
        model.classifier.out_proj.weight.zero_()
        model.classifier.out_proj.bias.copy_(torch.tensor([-4.0, 4.0, 4.0]))

    line = smoke_test(get("text-classification"), model, tokenizer)["output"]

    assert line == "politics 0.98, tech 0.98"
    with torch.no_grad():
        model.classifier.out_proj.bias.copy_(torch.tensor([-4.0, -3.0, -5.0]))
    assert smoke_test(get("text-classification"), model, tokenizer)["output"] == (
        "no label above 0.5 (highest: politics 0.05)"
    )
