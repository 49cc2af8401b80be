"""The pure parts of choosing a checkpoint's keys: copies, adapters, recorded config values.

Key names come from real transformers classes (built on the meta device), placed where public
LightningModules put them.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from longformer_action import demo
from longformer_action.errors import MappingError
from longformer_action.mapping import adapters, selection
from longformer_action.mapping.recorded import config_disagreements
from longformer_action.reading.base_model import base_from_hparams
from longformer_action.reading.checkpoint import read_checkpoint
from longformer_action.reading.hparams import recorded_config


@pytest.fixture(scope="module")
def qa_keys(base_model) -> list[str]:
    from transformers import LongformerConfig, LongformerForQuestionAnswering

    with torch.device("meta"):
        model = LongformerForQuestionAnswering(LongformerConfig.from_pretrained(base_model))
    return list(model.state_dict())


def _under(prefix: str, keys: list[str]) -> list[str]:
    return [prefix + k for k in keys]


def test_ema_of_a_wrapped_class_behind_a_wrapper_prefix(qa_keys):
    # timm's ModelEmaV2 (`model_ema.module`) beside `model`, all under DeepSpeed's `_forward_module.`
    names = _under("_forward_module.", _under("model.", qa_keys) + _under("model_ema.module.", qa_keys))
    copies = selection.find_copies(names)
    assert [(c.root, c.encoder, c.option) for c in copies] == [
        ("model.", "model.longformer.", "model."),
        ("model_ema.module.", "model_ema.module.longformer.", "model_ema.module."),
    ]
    chosen, dropped = selection.select_copy(names, "model_ema.module")
    assert chosen == copies[1]
    assert set(dropped) == set(_under("_forward_module.model.", qa_keys))


def test_averaged_model_of_a_wrapped_class(qa_keys):
    # `self.ema = AveragedModel(self.model)` beside `self.model = LongformerForQuestionAnswering(...)`
    names = _under("model.", qa_keys) + _under("ema.module.", qa_keys) + ["ema.n_averaged"]
    copies = selection.find_copies(names)
    assert [(c.option, c.encoder, c.extra) for c in copies] == [
        ("ema.module.", "ema.module.longformer.", ("ema.n_averaged",)),
        ("model.", "model.longformer.", ()),
    ]
    picked = selection.select({k: (1,) for k in names}, copy="ema.module.")
    assert set(picked.shapes) == set(_under("ema.module.", qa_keys))
    assert picked.dropped["ema.n_averaged"] == "bookkeeping of 'ema.module.' (not a weight)"


def test_three_copies_and_their_bookkeeping(qa_keys):
    names = (
        _under("", qa_keys)
        + _under("ema.module.", qa_keys)
        + _under("swa.module.", qa_keys)
        + ["ema.n_averaged", "swa.n_averaged", "loss_fn.weight"]
    )
    copies = selection.find_copies(names)
    assert [c.option for c in copies] == [".", "ema.module.", "swa.module."]
    assert "loss_fn.weight" in copies[0].keys, "with a root copy, every other key is the root copy's"
    chosen, dropped = selection.select_copy(names, "swa.module.")
    assert dropped["ema.n_averaged"] == "bookkeeping of 'ema.module.' (not a weight)"
    assert dropped["swa.n_averaged"] == "bookkeeping of 'swa.module.' (not a weight)"
    assert dropped["loss_fn.weight"].startswith("another copy of the model (the root copy)")
    with pytest.raises(MappingError, match=r"holds 3 copies .*--copy \..*--copy ema\.module\..*--copy swa\.module\."):
        selection.select_copy(names, None)


@pytest.fixture(scope="module")
def led_keys(led_base_model) -> list[str]:
    from transformers import LEDConfig, LEDForConditionalGeneration

    with torch.device("meta"):
        model = LEDForConditionalGeneration(LEDConfig.from_pretrained(led_base_model))
    return list(model.state_dict())


def test_ema_of_an_led_is_found_by_the_families_anchor(led_keys):
    # LED's base model is found by its own anchor (encoder.embed_positions), not Longformer's word embeddings
    names = _under("model.", led_keys) + _under("ema.module.", led_keys) + ["ema.n_averaged"]
    copies = selection.find_copies(names)
    assert [(c.option, c.encoder, c.extra) for c in copies] == [
        ("ema.module.", "ema.module.led.", ("ema.n_averaged",)),
        ("model.", "model.led.", ()),
    ]
    picked = selection.select({k: (1,) for k in names}, copy="ema.module.")
    assert set(picked.shapes) == set(_under("ema.module.", led_keys))
    with pytest.raises(MappingError, match=r"holds 2 copies .*--copy ema\.module\..*--copy model\."):
        selection.select({k: (1,) for k in names})


def test_an_led_saved_without_its_embeddings_names_what_is_missing(led_keys):
    embeddings = ("shared", "embed_positions", "layernorm_embedding", "embed_tokens")
    frozen = [k for k in _under("model.", led_keys) if not any(e in k for e in embeddings)]
    with pytest.raises(MappingError) as info:
        selection.select({k: (1,) for k in frozen})
    message = info.value.format_message()
    assert message.startswith(
        "the checkpoint has part of an LED encoder-decoder model under 'model.led.': the encoder (2 layers, with "
        "global attention), the decoder, but not the embeddings (missing 'model.led.decoder.embed_positions.weight'"
    )
    assert "strict_loading=False" in message


def test_copy_on_a_single_model(qa_keys):
    assert selection.select_copy(qa_keys, None) == (None, {})
    assert selection.select_copy(qa_keys, ".") == (None, {})
    with pytest.raises(MappingError, match="holds one copy of the model"):
        selection.select_copy(qa_keys, "ema.module.")


def test_adapters_outside_peft_are_recognised_and_not_merged(qa_keys):
    # loralib keeps `lora_A`/`lora_B` as parameters of the adapted Linear
    names = [*qa_keys, "longformer.encoder.layer.0.attention.self.query.lora_A"]
    names.append("longformer.encoder.layer.0.attention.self.query.lora_B")
    found = adapters.find_adapters(names)
    assert (
        found is not None and found.root == "" and found.modules == ("longformer.encoder.layer.0.attention.self.query",)
    )
    message = adapters.unmerged_error(found).format_message()
    assert "not in peft's layout" in message and "W + scaling * B @ A" in message
    assert adapters.find_adapters(qa_keys) is None


def test_peft_names_once_merged():
    root = "model.base_model.model."
    assert adapters.merged_name(root + "longformer.encoder.layer.0.attention.self.query.base_layer.weight") == (
        root + "longformer.encoder.layer.0.attention.self.query.weight"
    )
    assert adapters.merged_name(root + "longformer.encoder.layer.0.attention.self.query.lora_A.default.weight") is None
    assert adapters.merged_name(root + "classifier.original_module.dense.weight") is None
    assert (
        adapters.merged_name(root + "classifier.modules_to_save.default.dense.weight")
        == root + "classifier.dense.weight"
    )


def _hparams_checkpoint(tmp_path, base_model, **hparams):
    from transformers import LongformerForQuestionAnswering

    module_state = {
        f"model.{k}": v for k, v in LongformerForQuestionAnswering(_config(base_model)).state_dict().items()
    }
    path = tmp_path / "h.ckpt"
    torch.save(
        {
            "state_dict": module_state,
            "hyper_parameters": hparams,
            "pytorch-lightning_version": "2.6.6",
            "epoch": 0,
            "global_step": 1,
        },
        path,
    )
    return read_checkpoint(path)


def _config(base_model, **overrides):
    from transformers import LongformerConfig

    return LongformerConfig.from_pretrained(base_model, **overrides)


def test_a_config_object_is_read_from_its_inert_placeholder(tmp_path, base_model):
    ckpt = _hparams_checkpoint(tmp_path, base_model, config=_config(base_model, attention_window=[8, 8]))
    assert ckpt.loader == "restricted", "the config object was not built"
    found = recorded_config(ckpt.hparams)
    assert found is not None and found[1] == "hyper-parameter 'config'"
    assert config_disagreements(ckpt.hparams, _config(base_model)) == []
    lines = config_disagreements(ckpt.hparams, _config(base_model, attention_window=16, layer_norm_eps=1e-5))
    assert lines == [
        "attention_window is [8, 8] in hyper-parameter 'config' but 16 in the base config",
        "layer_norm_eps is 1e-12 in hyper-parameter 'config' but 1e-05 in the base config",
    ]
    base = base_from_hparams(ckpt)
    assert base.spec == "hparams" and base.config["attention_window"] == [8, 8] and base.tokenizer_files == []


@pytest.mark.parametrize(
    ("args", "problems"),
    [
        (argparse.Namespace(attention_window=8), []),  # two-sided, as transformers writes it
        (argparse.Namespace(attention_window=4), []),  # one-sided, as allenai's scripts write it
        (
            argparse.Namespace(attention_window=256),
            ["attention_window is 256 in hyper-parameter 'args.attention_window'"],
        ),
        (argparse.Namespace(max_position_embeddings=256), []),  # without RoBERTa's padding offset of 2
        (argparse.Namespace(max_position_embeddings=4098), ["max_position_embeddings is 4098"]),
        (argparse.Namespace(num_hidden_layers=12, lr=3e-5), ["num_hidden_layers is 12"]),
    ],
)
def test_single_fields_in_a_namespace(tmp_path, base_model, args, problems):
    ckpt = _hparams_checkpoint(tmp_path, base_model, args=args)
    lines = config_disagreements(ckpt.hparams, _config(base_model))
    assert len(lines) == len(problems)
    for line, problem in zip(lines, problems, strict=True):
        assert line.startswith(problem)


def test_the_demo_hparams_agree(tmp_path, base_model):
    # make_module records only the optimizer's settings: nothing to compare
    module = demo.make_module(base_model)
    assert config_disagreements(dict(module.hparams), _config(base_model)) == []


def test_find_crfs_by_their_three_tensors():
    crf = {"crf.transitions": (5, 5), "crf.start_transitions": (5,), "crf.end_transitions": (5,)}
    assert selection.find_crfs({**crf, "model.classifier.weight": (5, 32)}) == {"crf.": 5}
    assert selection.find_crfs({"transitions": (2, 2), "start_transitions": (2,), "end_transitions": (2,)}) == {"": 2}
    assert selection.find_crfs({**crf, "crf.transitions": (5, 4)}) == {}, "not square"
    assert selection.find_crfs({k: v for k, v in crf.items() if "end" not in k}) == {}, "no end scores"
    assert selection.find_crfs({**crf, "crf.start_transitions": (4,)}) == {}, "another number of tags"
