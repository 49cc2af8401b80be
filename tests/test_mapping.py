"""Reading the task and the fate of every key (pure: names and shapes only), for every task's class."""

from __future__ import annotations

import pytest
from transformers import LEDConfig, LongformerConfig

from longformer_action import demo
from longformer_action.errors import MappingError
from longformer_action.mapping.layout import check_mapping, head_readings, plan_mapping
from longformer_action.mapping.target import expected_shapes
from longformer_action.registry import tasks

H = 32


@pytest.fixture(scope="module")
def shapes_of():
    """The state dict shapes of each task's transformers class (3 labels where the class has labels)."""

    def config(task):
        if task.family == "led":
            return LEDConfig(**demo.TINY_LED_CONFIG, vocab_size=400)
        return LongformerConfig(**demo.TINY_CONFIG, vocab_size=400, num_labels=3 if task.labels else 2)

    return {name: expected_shapes(task, config(task)) for name, task in tasks.REGISTRY.items()}


@pytest.fixture(scope="module")
def expected(shapes_of):
    return shapes_of["question-answering"]


def encoder_only(expected, prefix="model.", *, pooler=True):
    shapes = {prefix + k.removeprefix("longformer."): v for k, v in expected.items() if k.startswith("longformer.")}
    if pooler:
        shapes[prefix + "pooler.dense.weight"] = (H, H)
        shapes[prefix + "pooler.dense.bias"] = (H,)
    return shapes


def origin_layout(expected, *, pooler=True, position_ids=False):
    """Keys as allenai's TriviaQA LightningModule saved them: `model.` = LongformerModel, `qa_outputs.`."""
    shapes = encoder_only(expected, pooler=pooler)
    shapes.update({"qa_outputs.weight": (2, H), "qa_outputs.bias": (2,)})
    if position_ids:
        shapes["model.embeddings.position_ids"] = (1, 258)
    return shapes


def test_origin_layout_drops_pooler_with_reason(expected):
    plan = plan_mapping(origin_layout(expected, position_ids=True))
    assert plan.task == "question-answering"
    assert plan.encoder_prefix == "model." and plan.head_prefix == ""
    assert plan.layout.startswith("sibling: encoder at `model.`")
    assert set(plan.mapped.values()) == set(expected)
    assert plan.dropped["model.pooler.dense.weight"] == "LongformerForQuestionAnswering has no pooler"
    assert "recomputes" in plan.dropped["model.embeddings.position_ids"]
    assert len(plan.mapped) + len(plan.dropped) == len(origin_layout(expected, position_ids=True))


@pytest.mark.parametrize("task", [t for t in tasks.REGISTRY if t != "feature-extraction"])
@pytest.mark.parametrize("prefix", ["model.", ""], ids=["wrapped", "bare"])
def test_auto_reads_every_class_from_its_own_keys(shapes_of, task, prefix):
    shapes = {prefix + k: v for k, v in shapes_of[task].items()}
    plan = plan_mapping(shapes)
    assert plan.task == task
    assert plan.layout.startswith("wrapped" if prefix else "bare")
    assert set(plan.mapped.values()) == set(shapes_of[task]), "every key maps to the class's own"
    assert not plan.dropped
    assert plan.num_labels == {"text-classification": 3, "token-classification": 3, "question-answering": 2}.get(task)
    check_mapping(plan, shapes, shapes_of[task], tasks.get(task))


@pytest.mark.parametrize("prefix", ["model.", "encoder.", ""], ids=["model", "encoder", "root"])
def test_the_encoder_alone_is_feature_extraction(shapes_of, prefix):
    shapes = {prefix + k: v for k, v in shapes_of["feature-extraction"].items()}
    plan = plan_mapping(shapes)
    assert plan.task == "feature-extraction" and plan.has_pooler
    assert set(plan.mapped.values()) == set(shapes_of["feature-extraction"])


@pytest.mark.parametrize("attr", ["longformer.", "encoder.", "net.", "roberta."])
def test_other_attribute_names(expected, attr):
    shapes = {attr + k.removeprefix("longformer."): v for k, v in expected.items() if k.startswith("longformer.")}
    shapes.update({"head.qa_outputs.weight": (2, H), "head.qa_outputs.bias": (2,)})
    plan = plan_mapping(shapes)
    assert plan.task == "question-answering" and plan.encoder_prefix == attr
    assert plan.mapped["head.qa_outputs.weight"] == "qa_outputs.weight"
    assert set(plan.mapped.values()) == set(expected)


def test_sibling_heads_under_any_names(shapes_of):
    base = encoder_only(shapes_of["question-answering"], "encoder.", pooler=False)
    sequence = {**base, "cls.dense.weight": (H, H), "cls.dense.bias": (H,), "cls.out_proj.weight": (4, H)}
    sequence["cls.out_proj.bias"] = (4,)
    plan = plan_mapping(sequence)
    assert (plan.task, plan.num_labels) == ("text-classification", 4)
    assert plan.mapped["cls.out_proj.weight"] == "classifier.out_proj.weight"
    masked = {
        **base,
        **{
            f"mlm.{k.removeprefix('lm_head.')}": v
            for k, v in shapes_of["fill-mask"].items()
            if k.startswith("lm_head.")
        },
    }
    plan = plan_mapping(masked)
    assert plan.task == "fill-mask" and plan.mapped["mlm.decoder.weight"] == "lm_head.decoder.weight"


def test_split_start_and_end_heads_are_concatenated_start_first(expected):
    shapes = encoder_only(expected, pooler=False)
    shapes.update({"end_logits_head.weight": (1, H), "end_logits_head.bias": (1,)})
    shapes.update({"start_logits_head.weight": (1, H), "start_logits_head.bias": (1,)})
    plan = plan_mapping(shapes)
    assert plan.task == "question-answering"
    assert plan.combined == {
        "qa_outputs.weight": ("start_logits_head.weight", "end_logits_head.weight"),
        "qa_outputs.bias": ("start_logits_head.bias", "end_logits_head.bias"),
    }
    check_mapping(plan, shapes, expected, tasks.get("question-answering"))


def test_a_bare_linear_is_ambiguous_and_lists_every_reading(expected):
    shapes = {**encoder_only(expected, pooler=False), "fc.weight": (5, H), "fc.bias": (5,)}
    with pytest.raises(MappingError) as info:
        plan_mapping(shapes)
    message = info.value.format_message()
    assert "more than one reading" in message and "'fc.weight' [5, 32]" in message
    assert "--task token-classification" in message and "--task feature-extraction" in message
    assert plan_mapping(shapes, task="token-classification").num_labels == 5


def test_a_one_output_linear_beside_a_pooler_may_be_multiple_choice(expected):
    shapes = {**encoder_only(expected), "score.weight": (1, H), "score.bias": (1,)}
    with pytest.raises(MappingError, match="--task multiple-choice"):
        plan_mapping(shapes)
    plan = plan_mapping(shapes, task="multiple-choice")
    assert plan.mapped["score.weight"] == "classifier.weight" and plan.has_pooler


@pytest.mark.parametrize(
    "head",
    [
        {"mlp.0.weight": (16, H), "mlp.0.bias": (16,), "mlp.2.weight": (3, 16), "mlp.2.bias": (3,)},
        {"crf.transitions": (5, 5), "crf.start_transitions": (5,), "emissions.weight": (5, H), "emissions.bias": (5,)},
        {"scorer.weight": (1, H)},
    ],
    ids=["mlp-over-mean-pooling", "crf", "bias-free-scorer"],
)
def test_a_custom_head_is_refused_then_exported_with_feature_extraction(expected, head):
    shapes = {**encoder_only(expected), **head}
    with pytest.raises(MappingError) as info:
        plan_mapping(shapes)
    message = info.value.format_message()
    assert "not a head that a transformers class computes" in message
    assert (
        all(f"'{k}' {list(v)}" in message for k in head for v in [head[k]]) and "--task feature-extraction" in message
    )
    if "mlp.0.weight" in head:  # an MLP with 3 outputs: what it likely is, named beside the way out
        assert "text-classification" in message
    plan = plan_mapping(shapes, task="feature-extraction")
    assert set(plan.dropped) == set(head)
    assert all("exports the encoder alone" in reason for reason in plan.dropped.values())
    assert plan.has_pooler, "the pooler is kept when present"


def test_a_given_task_that_does_not_fit_the_head(expected):
    with pytest.raises(MappingError, match=r"is not a masked language modelling head \(LongformerForMaskedLM needs"):
        plan_mapping(origin_layout(expected), task="fill-mask")


@pytest.mark.parametrize("wrapper", ["_forward_module.", "module.", "_orig_mod.", "_forward_module.module."])
def test_wrapper_prefixes(expected, wrapper):
    shapes = {wrapper + "model." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes)
    assert plan.wrapper_prefix == wrapper
    assert set(plan.mapped.values()) == set(expected)


def test_compiled_inner_module(expected):
    shapes = {"model._orig_mod." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes)
    assert set(plan.mapped.values()) == set(expected)


def test_prefix_override(expected):
    shapes = {"model." + k: v for k, v in expected.items()}
    plan = plan_mapping(shapes, prefix="model.longformer")
    assert plan.encoder_prefix == "model.longformer."
    with pytest.raises(MappingError, match="no key starts with --prefix 'encoder.'"):
        plan_mapping(shapes, prefix="encoder.")


def test_keys_beside_a_known_head_are_a_custom_head(expected):
    shapes = origin_layout(expected)
    shapes["teacher.classifier.weight"] = (2, H)
    shapes["loss_weights"] = (2,)
    with pytest.raises(MappingError, match=r"'loss_weights' \[2\].*'teacher.classifier.weight' \[2, 32\]"):
        plan_mapping(shapes)


def test_missing_keys_are_an_error(expected):
    shapes = origin_layout(expected)
    del shapes["model.encoder.layer.1.output.dense.weight"]
    plan = plan_mapping(shapes)
    with pytest.raises(MappingError, match=r"lacks 1 weight\(s\).*'longformer.encoder.layer.1.output.dense.weight'"):
        check_mapping(plan, shapes, expected, tasks.get(plan.task))


def test_shape_mismatch_names_tensor_and_shapes(expected):
    shapes = origin_layout(expected)
    shapes["model.embeddings.word_embeddings.weight"] = (50265, H)
    plan = plan_mapping(shapes)
    with pytest.raises(
        MappingError,
        match=r"'model.embeddings.word_embeddings.weight' has shape \[50265, 32\] but the config needs \[400, 32\]",
    ):
        check_mapping(plan, shapes, expected, tasks.get(plan.task))


def test_more_layers_than_config(expected):
    shapes = origin_layout(expected)
    for key, shape in list(shapes.items()):
        if ".layer.1." in key:
            shapes[key.replace(".layer.1.", ".layer.2.")] = shape
    plan = plan_mapping(shapes)
    with pytest.raises(MappingError, match="the checkpoint has 3 layers, the base config 2"):
        check_mapping(plan, shapes, expected, tasks.get(plan.task))


def test_bert_checkpoint(expected):
    shapes = {
        k.replace("longformer.", "bert."): v
        for k, v in expected.items()
        if "_global" not in k and k.startswith("longformer.")
    }
    shapes.update({"qa_outputs.weight": (2, H), "qa_outputs.bias": (2,)})
    with pytest.raises(MappingError, match="not a Longformer.*BERT or RoBERTa"):
        plan_mapping(shapes)


def test_no_encoder(expected):
    with pytest.raises(MappingError, match="no Longformer encoder"):
        plan_mapping({"fc.weight": (2, 2)})


def test_head_readings_for_inspect(expected):
    shapes = {**encoder_only(expected, pooler=False), "fc.weight": (2, H), "fc.bias": (2,)}
    info = head_readings(shapes)
    assert info["encoder_prefix"] == "model." and info["head_keys"] == {"fc.bias": [2], "fc.weight": [2, H]}
    assert {r["task"] for r in info["readings"]} == {"question-answering", "token-classification"}
    assert not any(r["exact"] for r in info["readings"])
