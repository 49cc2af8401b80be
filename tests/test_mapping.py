"""Layout detection and the fate of every key (pure: names and shapes only)."""

from __future__ import annotations

import pytest
from transformers import LongformerConfig

from longformer_action import demo
from longformer_action.convert import expected_shapes
from longformer_action.errors import MappingError
from longformer_action.mapping import plan_mapping


@pytest.fixture(scope="module")
def expected():
    return expected_shapes(LongformerConfig(**demo.TINY_CONFIG, vocab_size=400))


def origin_layout(expected, *, pooler=True, position_ids=False):
    """Keys as allenai's TriviaQA LightningModule saved them: `model.` = LongformerModel, `qa_outputs.`."""
    shapes = {}
    for key, shape in expected.items():
        if key.startswith("longformer."):
            shapes["model." + key.removeprefix("longformer.")] = shape
        else:
            shapes[key] = shape
    if pooler:
        shapes["model.pooler.dense.weight"] = (32, 32)
        shapes["model.pooler.dense.bias"] = (32,)
    if position_ids:
        shapes["model.embeddings.position_ids"] = (1, 258)
    return shapes


def test_origin_layout_drops_pooler_with_reason(expected):
    plan = plan_mapping(origin_layout(expected, position_ids=True), expected)
    assert plan.encoder_prefix == "model." and plan.head_prefix == ""
    assert plan.layout.startswith("origin")
    assert set(plan.mapped.values()) == set(expected)
    assert plan.dropped["model.pooler.dense.weight"] == "LongformerForQuestionAnswering has no pooler"
    assert "recomputes" in plan.dropped["model.embeddings.position_ids"]
    assert len(plan.mapped) + len(plan.dropped) == len(origin_layout(expected, position_ids=True))


def test_wrapped_hf_class(expected):
    shapes = {"model." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes, expected)
    assert (plan.encoder_prefix, plan.head_prefix) == ("model.longformer.", "model.")
    assert plan.mapped["model.qa_outputs.weight"] == "qa_outputs.weight"
    assert (
        plan.mapped["model.longformer.embeddings.word_embeddings.weight"]
        == "longformer.embeddings.word_embeddings.weight"
    )
    assert not plan.dropped


@pytest.mark.parametrize("attr", ["longformer.", "encoder.", "net.", "roberta."])
def test_other_attribute_names(expected, attr):
    shapes = {attr + k.removeprefix("longformer."): v for k, v in expected.items() if k.startswith("longformer.")}
    shapes.update({"head.qa_outputs.weight": (2, 32), "head.qa_outputs.bias": (2,)})
    plan = plan_mapping(shapes, expected)
    assert plan.encoder_prefix == attr and plan.head_prefix == "head."
    assert set(plan.mapped.values()) == set(expected)


@pytest.mark.parametrize("wrapper", ["_forward_module.", "module.", "_orig_mod.", "_forward_module.module."])
def test_wrapper_prefixes(expected, wrapper):
    shapes = {wrapper + "model." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes, expected)
    assert plan.wrapper_prefix == wrapper
    assert set(plan.mapped.values()) == set(expected)


def test_compiled_inner_module(expected):
    shapes = {"model._orig_mod." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes, expected)
    assert set(plan.mapped.values()) == set(expected)


def test_prefix_override(expected):
    shapes = {"model." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes, expected, prefix="model.longformer")
    assert plan.encoder_prefix == "model.longformer."
    with pytest.raises(MappingError, match="no key starts with --prefix 'encoder.'"):
        plan_mapping(shapes, expected, prefix="encoder.")


def test_unknown_keys_are_an_error(expected):
    shapes = origin_layout(expected)
    shapes["teacher.classifier.weight"] = (2, 32)
    shapes["loss_weights"] = (2,)
    with pytest.raises(
        MappingError, match=r"2 key\(s\) outside the encoder .*'loss_weights', 'teacher.classifier.weight'"
    ):
        plan_mapping(shapes, expected)


def test_missing_keys_are_an_error(expected):
    shapes = origin_layout(expected)
    del shapes["model.encoder.layer.1.output.dense.weight"]
    with pytest.raises(MappingError, match=r"lacks 1 weight\(s\).*'longformer.encoder.layer.1.output.dense.weight'"):
        plan_mapping(shapes, expected)


def test_shape_mismatch_names_tensor_and_shapes(expected):
    shapes = origin_layout(expected)
    shapes["model.embeddings.word_embeddings.weight"] = (50265, 32)
    with pytest.raises(
        MappingError,
        match=r"'model.embeddings.word_embeddings.weight' has shape \[50265, 32\] but the config needs \[400, 32\]",
    ):
        plan_mapping(shapes, expected)


def test_more_layers_than_config(expected):
    shapes = origin_layout(expected)
    for key, shape in list(shapes.items()):
        if ".layer.1." in key:
            shapes[key.replace(".layer.1.", ".layer.2.")] = shape
    with pytest.raises(MappingError, match="the checkpoint has 3 layers, the base config 2"):
        plan_mapping(shapes, expected)


def test_bert_checkpoint(expected):
    shapes = {
        k.replace("longformer.", "bert."): v
        for k, v in expected.items()
        if "_global" not in k and k.startswith("longformer.")
    }
    shapes.update({"qa_outputs.weight": (2, 32), "qa_outputs.bias": (2,)})
    with pytest.raises(MappingError, match="not a Longformer.*BERT or RoBERTa"):
        plan_mapping(shapes, expected)


def test_missing_head(expected):
    shapes = {k: v for k, v in origin_layout(expected).items() if not k.startswith("qa_outputs")}
    with pytest.raises(MappingError, match="no question-answering head"):
        plan_mapping(shapes, expected)


def test_no_encoder(expected):
    with pytest.raises(MappingError, match="no Longformer encoder"):
        plan_mapping({"fc.weight": (2, 2)}, expected)


def test_layout_only_without_config(expected):
    plan = plan_mapping(origin_layout(expected), None)
    assert plan.layout.startswith("origin")
