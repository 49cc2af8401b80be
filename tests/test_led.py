"""LED (Longformer Encoder-Decoder) checkpoints: text2text-generation end to end, from real Trainer checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, LEDConfig

from longformer_action import demo
from longformer_action.errors import MappingError
from longformer_action.mapping.layout import plan_mapping
from longformer_action.registry import tasks
from longformer_action.registry.families import config_value, sep_token_id

from .fake_hub import FakeHub, point_client_at
from .helpers import one_error_line
from .test_convert import saved_tensors

TASK = "text2text-generation"
WRAPPER = "_forward_module."


@pytest.fixture(scope="module")
def led_base(led_base_model: Path) -> Path:
    """The session's tiny LED base folder: config.json, generation_config.json and tokenizer files, no weights."""
    return led_base_model


def _rewrite(source: Path, target: Path, change) -> Path:
    ckpt = torch.load(source, weights_only=False, map_location="cpu")
    ckpt["state_dict"] = change(ckpt["state_dict"])
    torch.save(ckpt, target)
    return target


@pytest.fixture(scope="module")
def led_checkpoints(trained_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trainer checkpoints of a tiny LED: wrapped (``model.led.*``), bare keys (the session's, trained once), and
    variants of the wrapped one."""
    folder = tmp_path_factory.mktemp("led-ckpt")
    made = {layout: trained_checkpoint(TASK, layout) for layout in ("wrapped", "bare")}
    made["prefixed"] = _rewrite(
        made["wrapped"], folder / "prefixed.ckpt", lambda sd: {WRAPPER + k: v for k, v in sd.items()}
    )

    def untie(sd):
        sd = dict(sd)
        sd["model.lm_head.weight"] = sd["model.lm_head.weight"].clone() + 0.25
        return sd

    made["untied"] = _rewrite(made["wrapped"], folder / "untied.ckpt", untie)
    return made


def module_of(led_base: Path, checkpoint: Path, layout: str) -> torch.nn.Module:
    """The LightningModule that wrote ``checkpoint``, with the checkpoint's weights (wrapper prefix removed)."""
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")["state_dict"]
    module = demo.make_module(led_base, task=TASK, layout="wrapped" if layout == "prefixed" else layout)
    module.load_state_dict({k.removeprefix(WRAPPER): v for k, v in state.items()})
    return module.eval()


def sample_inputs(folder: Path) -> dict[str, torch.Tensor]:
    """Two source texts longer than the attention window (padded), teacher-forced targets, global attention on <s>."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = LEDConfig.from_pretrained(folder)
    sources = [" ".join(demo.CORPUS), demo.CORPUS[1]]
    encoded = tokenizer(sources, return_tensors="pt", padding=True)
    assert encoded["input_ids"].shape[1] > 8 and encoded["attention_mask"][1].sum() < encoded["input_ids"].shape[1]
    targets = tokenizer(["The Eiffel Tower is in Paris.", "Lightning trains."], return_tensors="pt", padding=True)
    start = torch.full((2, 1), config.decoder_start_token_id)
    decoder_input_ids = torch.cat([start, targets["input_ids"][:, :-1]], dim=1)
    decoder_attention_mask = torch.cat([torch.ones(2, 1, dtype=torch.long), targets["attention_mask"][:, :-1]], dim=1)
    global_attention_mask = torch.zeros_like(encoded["input_ids"])
    global_attention_mask[:, 0] = 1
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "global_attention_mask": global_attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": decoder_attention_mask,
    }


@pytest.mark.parametrize("layout", ["wrapped", "bare", "prefixed"])
def test_round_trip(cli, led_base, led_checkpoints, tmp_path, layout):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", led_checkpoints[layout], "--output", out, "--base-model", led_base)
    assert result.exit_code == 0, result.stderr
    assert "text2text-generation (LEDForConditionalGeneration)" in result.stderr
    assert "check: passed" in result.stderr and "sample:" in result.stderr and "tokens [" in result.stderr

    # every tensor in the folder equals its source; the tied copies are saved once, as led.shared.weight
    source = torch.load(led_checkpoints[layout], weights_only=False, map_location="cpu")["state_dict"]
    saved = saved_tensors(out)
    report = json.loads((out / "conversion-report.json").read_text())
    fates = {k["source"]: k for k in report["mapping"]["keys"]}
    assert set(fates) == set(source)
    for key, fate in fates.items():
        if fate["fate"] == "mapped":
            assert torch.equal(saved[fate["target"]], source[key]), key
        else:
            assert "tied to 'led.shared.weight'" in fate["reason"]
            assert torch.equal(source[key], saved["led.shared.weight"])
    assert sorted(k for k, f in fates.items() if f["fate"] == "dropped") == sorted(
        k for k in source if k.endswith(("lm_head.weight", "embed_tokens.weight"))
    )
    assert "final_logits_bias" in saved and len(saved) == report["mapping"]["mapped"]

    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LEDForConditionalGeneration"] and config["model_type"] == "led"
    written, served = (json.loads((f / "generation_config.json").read_text()) for f in (out, led_base))
    assert "_from_model_config" not in written and served["_from_model_config"] is True
    assert {k: v for k, v in written.items() if k != "transformers_version"} == {
        k: v for k, v in served.items() if k not in ("transformers_version", "_from_model_config")
    }
    assert report["task"] == TASK and report["conversion"]["pipeline_tag"] == "summarization"
    assert report["conversion"]["global_attention"]["convention"] == "first-token"
    assert report["check"]["inputs"]["global_attention_passed"] is True
    assert "pipeline_tag: summarization" in (out / "README.md").read_text()

    # logits: the folder as a downstream job loads it, against the trained LightningModule's own forward
    model, info = AutoModelForSeq2SeqLM.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert type(model).__name__ == "LEDForConditionalGeneration"
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.led.shared.weight.data_ptr(), "tied, as transformers ties them"
    inputs = sample_inputs(out)
    module = module_of(led_base, led_checkpoints[layout], layout)
    with torch.inference_mode():
        want = module(**inputs)["logits"]
        got = model(**inputs).logits
    assert got.shape == (2, inputs["decoder_input_ids"].shape[1], config["vocab_size"])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_verify_an_existing_folder(cli, led_base, led_checkpoints, tmp_path):
    out = tmp_path / "model"
    assert cli("convert", "--checkpoint", led_checkpoints["wrapped"], "--output", out, "--base-model", led_base)
    result = cli("verify", "--model", out, "--checkpoint", led_checkpoints["wrapped"])
    assert result.exit_code == 0, result.stderr
    assert "check: passed" in result.stderr


def test_lm_head_that_differs_from_the_embeddings_is_refused(cli, led_base, led_checkpoints, tmp_path):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", led_checkpoints["untied"], "--output", out, "--base-model", led_base)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "'model.lm_head.weight'" in line and "'model.led.shared.weight'" in line and "max abs diff 0.25" in line
    assert "differ" in line and "re-tie" in line
    assert not out.exists()


def test_led_checkpoint_with_a_longformer_base(cli, base_model, led_checkpoints, tmp_path):
    result = cli(
        "convert", "--checkpoint", led_checkpoints["wrapped"], "--output", tmp_path / "m", "--base-model", base_model
    )
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "LED" in line and "'longformer'" in line and str(base_model) in line
    assert "allenai/led-base-16384" in line
    assert not (tmp_path / "m").exists()


def test_longformer_checkpoint_with_an_led_base(cli, led_base, checkpoints, tmp_path):
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--base-model", led_base)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "is a Longformer model" in line and "'led'" in line and "allenai/longformer-base-4096" in line


def test_default_base_model_becomes_led_base(cli, led_base, led_checkpoints, tmp_path, monkeypatch):
    """Without --base-model an LED checkpoint uses allenai/led-base-16384 (here a fake Hub serves it), and says so."""
    fake = FakeHub()
    fake.add_repo("allenai/led-base-16384", led_base)
    with fake.running():
        point_client_at(monkeypatch, fake.url, tmp_path / "hf-home")
        out = tmp_path / "model"
        result = cli("convert", "--checkpoint", led_checkpoints["wrapped"], "--output", out)
        from huggingface_hub.utils import close_session

        close_session()
    assert result.exit_code == 0, result.stderr
    assert (
        "the default base model allenai/longformer-base-4096 is a Longformer: using allenai/led-base-16384, "
        "the likely base" in result.stderr
    )
    assert not any("longformer-base-4096" in p for p in fake.paths), "the Longformer default is never fetched"
    assert {"config.json", "generation_config.json"} <= fake.requested_files("allenai/led-base-16384")
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["base_model"]["spec"] == "allenai/led-base-16384" and report["check"]["passed"]
    assert (out / "generation_config.json").is_file(), "fetched from the Hub with config and tokenizer"
    assert "base_model: allenai/led-base-16384" in (out / "README.md").read_text()


def test_feature_extraction_exports_led_model(cli, led_base, led_checkpoints, tmp_path):
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", led_checkpoints["wrapped"], "--output", out, "--base-model", led_base,
        "--task", "feature-extraction",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LEDModel"]
    report = json.loads((out / "conversion-report.json").read_text())
    # the LM head no LEDModel computes is kept beside the model, with the reason
    kept = {k["source"]: k["reason"] for k in report["mapping"]["keys"] if k["fate"] == "kept"}
    assert "exports the encoder and decoder alone" in kept["model.lm_head.weight"]
    assert "exports the encoder and decoder alone" in kept["model.final_logits_bias"]
    assert {o["name"] for o in report["check"]["outputs"]} == {"last_hidden_state", "encoder_last_hidden_state"}
    saved = saved_tensors(out)
    assert all(k.split(".")[0] in ("shared", "encoder", "decoder") for k in saved)
    assert "shared.weight" in saved and "encoder.embed_tokens.weight" not in saved, "tied copies saved once"


def test_inspect_names_the_task(cli, led_checkpoints):
    result = cli("inspect", "--checkpoint", led_checkpoints["prefixed"])
    assert result.exit_code == 0, result.stderr
    assert "task:          text2text-generation (LEDForConditionalGeneration)" in result.stdout
    info = json.loads(cli("inspect", "--checkpoint", led_checkpoints["bare"], "--json").stdout)
    assert info["task"] == TASK and info["family"] == "led"
    assert info["shape"] == {"vocab_size": info["shape"]["vocab_size"], "hidden_size": 32, "encoder_layers": 2,
                             "decoder_layers": 2}  # fmt: skip


def test_a_longformer_task_on_an_led_checkpoint(cli, led_base, led_checkpoints, tmp_path):
    result = cli(
        "convert", "--checkpoint", led_checkpoints["wrapped"], "--output", tmp_path / "m", "--base-model", led_base,
        "--task", "question-answering",
    )  # fmt: skip
    line = one_error_line(result)
    assert "LED" in line and "text2text-generation" in line and "feature-extraction" in line


@pytest.mark.parametrize("head", ["question-answering", "classification"])
def test_other_led_heads_are_refused(head):
    """LEDForQuestionAnswering, and the classification head older transformers had (LEDForSequenceClassification)."""
    from transformers import LEDForQuestionAnswering, LEDModel

    config = LEDConfig(**demo.TINY_LED_CONFIG, vocab_size=400)
    with torch.device("meta"):
        model = LEDForQuestionAnswering(config) if head == "question-answering" else LEDModel(config)
    shapes = {"model." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    if head == "classification":
        shapes = {k.replace("model.", "model.led.", 1): v for k, v in shapes.items()}
        shapes.update(
            {"model.classification_head.dense.weight": (32, 32), "model.classification_head.dense.bias": (32,)}
        )
        shapes.update(
            {"model.classification_head.out_proj.weight": (3, 32), "model.classification_head.out_proj.bias": (3,)}
        )
    with pytest.raises(MappingError) as info:
        plan_mapping(shapes)
    message = info.value.format_message()
    assert "not a head that a transformers class computes" in message
    assert "--task feature-extraction" in message and "LEDModel" in message
    assert tasks.get("feature-extraction", "led").architecture == "LEDModel"


@pytest.fixture(scope="module")
def led_shapes() -> dict[str, tuple[int, ...]]:
    """``LEDForConditionalGeneration``'s keys and shapes, as a LightningModule wrapping it saves them."""
    from transformers import LEDForConditionalGeneration

    with torch.device("meta"):
        model = LEDForConditionalGeneration(LEDConfig(**demo.TINY_LED_CONFIG, vocab_size=400))
    return {"model." + k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_prefix_override(led_shapes):
    plan = plan_mapping(led_shapes, prefix="model.led.")
    assert plan.task == TASK and plan.family == "led" and plan.encoder_prefix == "model.led."
    with pytest.raises(MappingError) as info:
        plan_mapping(led_shapes, prefix="model.")
    assert "Pass --prefix model.led." in info.value.format_message()


def test_a_bart_like_checkpoint_is_refused(led_shapes):
    shapes = {k: v for k, v in led_shapes.items() if ".longformer_self_attn.query_global." not in k}
    with pytest.raises(MappingError) as info:
        plan_mapping(shapes)
    assert "looks like a BART checkpoint" in info.value.format_message()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"attention_window": 7}, "has to be an even value"),
        ({"attention_window": [8, 8, 8]}, "Expected 2, given 3"),
        ({"max_decoder_position_embeddings": 128}, "'model.led.decoder.embed_positions.weight' has shape [64, 32]"),
        ({"max_encoder_position_embeddings": 512}, "'model.led.encoder.embed_positions.weight' has shape [256, 32]"),
    ],
    ids=["odd-window", "windows-per-layer", "decoder-positions", "encoder-positions"],
)
def test_base_config_that_does_not_fit(cli, led_base, led_checkpoints, tmp_path, change, fragment):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(led_base, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, **change}))
    result = cli(
        "convert", "--checkpoint", led_checkpoints["wrapped"], "--output", tmp_path / "m", "--base-model", base
    )
    assert result.exit_code == 1
    line = one_error_line(result)
    assert fragment in line and "--base-model" in line
    assert not (tmp_path / "m").exists()


def test_a_tampered_folder_fails_the_check_with_exit_3(cli, led_base, led_checkpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "model"
    args = ("--checkpoint", led_checkpoints["wrapped"], "--output", out, "--base-model", led_base, "--no-check")
    assert cli("convert", *args).exit_code == 0
    tensors = load_file(out / "model.safetensors")
    tensors["final_logits_bias"] = tensors["final_logits_bias"] + 1e-3
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    result = cli("verify", "--model", out, "--checkpoint", led_checkpoints["wrapped"])
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "output 'logits' differs" in line and "'final_logits_bias' differs from its source" in line


USER_MODULE = '''
import torch
import pytorch_lightning as pl
from transformers import LEDConfig, LEDForConditionalGeneration


class Summarizer(pl.LightningModule):
    """A user's LED summariser: the transformers class wrapped, global attention on <s>."""

    def __init__(self, config_dir: str, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.model = LEDForConditionalGeneration(LEDConfig.from_pretrained(config_dir))

    def forward(self, input_ids, attention_mask, global_attention_mask, decoder_input_ids, decoder_attention_mask=None):
        return self.model(
            input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
            decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask,
        ).logits

    def training_step(self, batch, batch_idx):
        mask = torch.zeros_like(batch["input_ids"])
        mask[:, 0] = 1
        logits = self(batch["input_ids"], batch["attention_mask"], mask, batch["decoder_input_ids"])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
'''


def test_users_lightning_module_as_reference(cli, led_base, tmp_path, monkeypatch):
    import importlib

    (tmp_path / "user_led.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("user_led").Summarizer(str(led_base))
    ckpt = demo.fit_and_save(module, demo.batches(led_base, 2, task=TASK), tmp_path / "user.ckpt")
    out, report = tmp_path / "model", tmp_path / "report.json"
    result = cli(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", led_base, "--report", report,
        "--lightning-module", "user_led:Summarizer", "--trust-checkpoint",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    check = json.loads(report.read_text())["check"]
    assert check["inputs"]["reference"] == "the LightningModule's forward"
    assert check["passed"] and check["max_abs_diff"] < 1e-5 and check["inputs"]["global_attention"] == "first-token"


# --- a base with config.json only, as public LED checkpoints ship it ------------------------------

#: The config.json of a public LED checkpoint written by transformers 4.x (led-large's shape), with the
#: sizes shrunk to a tiny model and every other field kept: no ``sep_token_id`` (LED has none),
#: ``torch_dtype``, ``num_hidden_layers`` beside ``encoder_layers``, one window per encoder layer.
PUBLIC_LED_CONFIG = {
    "activation_dropout": 0.0,
    "activation_function": "gelu",
    "architectures": ["LEDForConditionalGeneration"],
    "attention_dropout": 0.0,
    "attention_window": [8, 8],
    "bos_token_id": 0,
    "classifier_dropout": 0.0,
    "d_model": 32,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 64,
    "decoder_layerdrop": 0.0,
    "decoder_layers": 2,
    "decoder_start_token_id": 2,
    "dropout": 0.1,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "encoder_layerdrop": 0.0,
    "encoder_layers": 2,
    "eos_token_id": 2,
    "init_std": 0.02,
    "is_encoder_decoder": True,
    "max_decoder_position_embeddings": 64,
    "max_encoder_position_embeddings": 256,
    "model_type": "led",
    "num_hidden_layers": 2,
    "pad_token_id": 1,
    "torch_dtype": "float32",
    "transformers_version": "4.14.0",
    "use_cache": True,
    "vocab_size": 400,
}
#: The sizes of the public config before shrinking (led-large's).
PUBLIC_LED_SIZES = {
    "attention_window": [512] * 6,
    "d_model": 1024,
    "decoder_attention_heads": 8,
    "decoder_ffn_dim": 2048,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "encoder_layers": 6,
    "max_decoder_position_embeddings": 1024,
    "max_encoder_position_embeddings": 16384,
    "num_hidden_layers": 6,
    "vocab_size": 50265,
}


def _config_only(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def public_led(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config-only base of the public shape, and a Trainer checkpoint trained with it that records the config."""
    work = tmp_path_factory.mktemp("public-led")
    base = _config_only(work / "base", PUBLIC_LED_CONFIG)
    ckpt = demo.train_checkpoint(base, work / "led.ckpt", task=TASK, steps=2, config=dict(PUBLIC_LED_CONFIG))
    return base, ckpt


def test_config_reads_go_through_the_family(public_led):
    """transformers 5 raises on a field LEDConfig does not define; the check's inputs read none."""
    from longformer_action.checking.inputs import make_inputs

    config = LEDConfig.from_dict({**PUBLIC_LED_CONFIG, **PUBLIC_LED_SIZES})
    with pytest.raises(AttributeError):
        config.sep_token_id  # noqa: B018 - the failure the registry's fields avoid
    assert sep_token_id(config) == 2 and config_value(config, "layers") == 6
    inputs = make_inputs(tasks.get(TASK), config)
    assert inputs["input_ids"].shape[1] > 256, "longer than the one-sided window of 256"
    assert (inputs["input_ids"][:, 0] == 0).all() and (inputs["decoder_input_ids"][:, 0] == 2).all()


@pytest.mark.parametrize("config_only", [True, False], ids=["tiny-led-config-only", "public-shape-config-only"])
def test_a_config_only_base_converts_and_checks(cli, led_base, led_checkpoints, public_led, tmp_path, config_only):
    if config_only:
        base = _config_only(tmp_path / "base", json.loads((led_base / "config.json").read_text()))
        ckpt = led_checkpoints["wrapped"]
    else:
        base, ckpt = public_led
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base)
    assert result.exit_code == 0, result.stderr
    assert "check: passed" in result.stderr and "Traceback" not in result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["check"]["passed"] and not report["check"]["inputs"]["tokenizer"]
    result = cli("verify", "--model", out, "--checkpoint", ckpt)
    assert result.exit_code == 0, result.stderr


def test_base_model_hparams_takes_the_recorded_led_config(cli, public_led, tmp_path):
    base, ckpt = public_led
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", "hparams")
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "led" and config["attention_window"] == [8, 8]
    assert json.loads((out / "conversion-report.json").read_text())["check"]["passed"]


def test_a_base_that_disagrees_with_the_recorded_led_config(cli, public_led, tmp_path):
    """A wider window fits every tensor (the check would pass with it); the recorded config catches it."""
    _, ckpt = public_led
    wider = _config_only(tmp_path / "wider", {**PUBLIC_LED_CONFIG, "attention_window": [16, 16]})
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", wider)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "attention_window is [8, 8] in hyper-parameter 'config' but [16, 16] in the base config" in line
    assert "--base-model hparams" in line and not out.exists()
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", "hparams")
    assert result.exit_code == 0, result.stderr
