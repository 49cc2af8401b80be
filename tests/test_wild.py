"""Checkpoints from the wild, each kind fixed as a whole: several copies of the model, LoRA adapters,
a config the checkpoint records, keys that are not weights, and folders the check must refuse.

Every checkpoint here is written by a real ``Trainer`` (tiny config, a few steps), then changed the
way the public reports describe.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from longformer_action import demo
from longformer_action.errors import EXIT_CHECK_FAILED

from .helpers import once, one_error_line


def _report(folder: Path) -> dict:
    return json.loads((folder / "conversion-report.json").read_text())


def _dropped(folder: Path) -> dict[str, str]:
    return {k["source"]: k["reason"] for k in _report(folder)["mapping"]["keys"] if k["fate"] == "dropped"}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _fit(module, base: Path, path: Path, *, task: str = "question-answering", steps: int = 2) -> Path:
    return demo.fit_and_save(module, demo.batches(base, steps, task=task), path)


# --- 4. several copies of the model -------------------------------------------------------------


@pytest.fixture(scope="session")
def ema_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """allenai's layout (``model`` + ``qa_outputs``) with an EMA of both beside them (``ema.module.*``)."""
    from torch import nn
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    def make(folder: Path) -> Path:
        module = demo.make_module(base_model, layout="origin")
        raw = lambda: nn.ModuleDict({"model": module.model, "qa_outputs": module.qa_outputs})  # noqa: E731
        module.ema = AveragedModel(raw(), multi_avg_fn=get_ema_multi_avg_fn(0.5))
        module.on_train_batch_end = lambda *args: module.ema.update_parameters(raw())
        return _fit(module, base_model, folder / "ema.ckpt")

    return once(tmp_path_factory, "wild-ema", make)


@pytest.fixture(scope="session")
def teacher_checkpoint(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wrapped text classifier (``model.*``) trained beside a frozen copy of itself (``teacher.*``)."""

    def make(folder: Path) -> Path:
        module = demo.make_module(base_model, task="text-classification")
        module.teacher = copy.deepcopy(module.model).requires_grad_(False)
        return _fit(module, base_model, folder / "teacher.ckpt", task="text-classification")

    return once(tmp_path_factory, "wild-teacher", make)


def test_ema_copies_are_listed_with_the_option_that_selects_each(cli, ema_checkpoint, base_model, tmp_path):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", ema_checkpoint, "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "holds 2 copies of the model" in line
    assert "the root copy (encoder at 'model.'" in line and "--copy ." in line
    assert "'ema.module.' (encoder at 'ema.module.model.'" in line and "--copy ema.module." in line
    assert not out.exists()


@pytest.mark.parametrize(("option", "kept", "other"), [("ema.module.", "ema.module.", "model."), (".", "", "ema.")])
def test_ema_copy_is_converted_and_the_other_dropped(cli, ema_checkpoint, base_model, tmp_path, option, kept, other):
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", ema_checkpoint, "--output", out, "--base-model", base_model, "--copy", option
    )
    assert result.exit_code == 0, result.stderr
    state = torch.load(ema_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    weights = _weights(out)
    source = state[f"{kept}model.encoder.layer.0.attention.self.query.weight"]
    assert torch.equal(weights["longformer.encoder.layer.0.attention.self.query.weight"], source)
    assert torch.equal(weights["qa_outputs.weight"], state[f"{kept}qa_outputs.weight"])
    assert not torch.equal(
        state["model.encoder.layer.0.attention.self.query.weight"],
        state["ema.module.model.encoder.layer.0.attention.self.query.weight"],
    ), "the average differs from the raw weights"
    dropped = _dropped(out)
    assert dropped["ema.n_averaged"] == "bookkeeping of 'ema.module.' (not a weight)"
    assert any(k.startswith(other) and "another copy of the model" in r for k, r in dropped.items())
    card = (out / "README.md").read_text()
    assert "another copy of the model" in card and "`ema.n_averaged`" in card
    result = cli("verify", "--model", out, "--checkpoint", ema_checkpoint, "--copy", option)
    assert result.exit_code == 0, result.stderr
    result = cli("verify", "--model", out, "--checkpoint", ema_checkpoint)  # the report's --copy
    assert result.exit_code == 0, result.stderr


def test_inspect_lists_the_copies(cli, ema_checkpoint):
    result = cli("inspect", "--checkpoint", ema_checkpoint)
    assert result.exit_code == 0, result.stderr
    assert "copies:        . (encoder at 'model.'" in result.stdout and "ema.module. (encoder at" in result.stdout
    assert "--copy ema.module." in result.stdout


def test_teacher_and_student_each_selectable(cli, teacher_checkpoint, base_model, tmp_path):
    result = cli("convert", "--checkpoint", teacher_checkpoint, "--output", tmp_path / "x", "--base-model", base_model)
    line = one_error_line(result)
    assert "'model.' (encoder at 'model.longformer.'" in line and "--copy model." in line
    assert "'teacher.' (encoder at 'teacher.longformer.'" in line and "--copy teacher." in line
    out = tmp_path / "teacher"
    result = cli(
        "convert", "--checkpoint", teacher_checkpoint, "--output", out, "--base-model", base_model, "--copy", "teacher"
    )
    assert result.exit_code == 0, result.stderr
    state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(_weights(out)["classifier.out_proj.weight"], state["teacher.classifier.out_proj.weight"])
    assert all(k.startswith("model.") for k in _dropped(out))
    result = cli(
        "convert", "--checkpoint", teacher_checkpoint, "--output", tmp_path / "y", "--base-model", base_model,
        "--copy", "student.",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--copy 'student.' names no copy" in one_error_line(result)


# --- 5. LoRA adapters ---------------------------------------------------------------------------


def _lora_module(base: Path, task: str, lora_kwargs: dict):
    import pytorch_lightning as pl
    from peft import LoraConfig, get_peft_model
    from transformers import LongformerConfig

    from longformer_action.registry import tasks

    entry = tasks.get(task)
    config = LongformerConfig.from_pretrained(base, num_labels=3)

    class LoraModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = get_peft_model(entry.model_class()(config), LoraConfig(**lora_kwargs))

        def training_step(self, batch, batch_idx):
            out = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                global_attention_mask=batch["global_attention_mask"],
            )
            return demo.LOSSES[task]({n: getattr(out, n) for n in entry.outputs if hasattr(out, n)}, batch)

        def configure_optimizers(self):
            return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=2e-2)

    return LoraModule()


@pytest.fixture(scope="session")
def lora(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """LoRA checkpoints and the adapter_config.json peft saves with them, by case."""
    cases = {
        # the report's case: query and value adapted, the classifier trained as a whole copy
        "text-classification": dict(
            r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]
        ),
        # another: every dense layer adapted, a different scaling, the head left frozen
        "token-classification": dict(r=2, lora_alpha=16, target_modules=["query", "key", "value", "dense"]),
    }

    def make(folder: Path) -> dict[str, tuple[Path, Path]]:
        made = {}
        for task, kwargs in cases.items():
            module = _lora_module(base_model, task, kwargs)
            ckpt = _fit(module, base_model, folder / f"{task}.ckpt", task=task)
            module.model.save_pretrained(folder / task)
            made[task] = (ckpt, folder / task / "adapter_config.json")
        return made

    return once(tmp_path_factory, "wild-lora", make)


def test_lora_without_its_config_says_how_to_merge(cli, lora, base_model, tmp_path):
    ckpt, _ = lora["text-classification"]
    result = cli("convert", "--checkpoint", ckpt, "--output", tmp_path / "m", "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "LoRA adapters that are not merged" in line and "query, value" in line
    assert "--adapter-config" in line and "merge_and_unload" in line
    assert "base config does not" not in line
    shown = cli("inspect", "--checkpoint", ckpt).stdout
    assert "adapters:      LoRA on 4 modules under 'model.base_model.model.', not merged" in shown
    assert "task:          text-classification" in shown, "read from the keys as they are once merged"


@pytest.mark.parametrize("task", ["text-classification", "token-classification"])
def test_lora_is_merged_as_peft_merges_and_checked_against_the_unmerged_model(cli, lora, base_model, tmp_path, task):
    ckpt, adapter_config = lora[task]
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model,
        "--adapter-config", adapter_config,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = _report(out)
    assert report["task"] == task
    assert report["check"]["passed"] and report["check"]["inputs"]["reference"].startswith("the unmerged adapter")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    key = "longformer.encoder.layer.0.attention.self.value.weight"  # layer 1 of <s> reads value_global
    base = state[f"model.base_model.model.{key.removesuffix('.weight')}.base_layer.weight"]
    merged = _weights(out)[key]
    assert not torch.equal(merged, base), "the adapter changed the weight"
    dropped = _dropped(out)
    assert any(".lora_B." in k and "merged into" in r for k, r in dropped.items())
    # verify takes the same options, and checks the folder against the unmerged model again
    result = cli("verify", "--model", out, "--checkpoint", ckpt, "--adapter-config", adapter_config)
    assert result.exit_code == 0, result.stderr


def test_lora_with_another_adapters_config_is_refused(cli, lora, base_model, tmp_path):
    ckpt, _ = lora["text-classification"]
    _, other = lora["token-classification"]
    result = cli(
        "convert", "--checkpoint", ckpt, "--output", tmp_path / "m", "--base-model", base_model,
        "--adapter-config", other,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--adapter-config does not describe the checkpoint's adapters" in one_error_line(result)


def test_adapter_config_without_adapters_is_refused(cli, checkpoints, lora, base_model, tmp_path):
    _, adapter_config = lora["text-classification"]
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--base-model", base_model,
        "--adapter-config", adapter_config,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "holds no LoRA adapters" in one_error_line(result)


# --- 6. the config the checkpoint records -------------------------------------------------------


@pytest.fixture(scope="session")
def config_in_hparams(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``save_hyperparameters()`` with the transformers config as a dict (attention_window [8, 8])."""
    from transformers import LongformerConfig

    config = LongformerConfig.from_pretrained(base_model, num_labels=3).to_dict()
    config["attention_window"] = [8, 8]

    def make(folder: Path) -> Path:
        module = demo.make_module(base_model, task="text-classification", config=config)
        return _fit(module, base_model, folder / "config.ckpt", task="text-classification")

    return once(tmp_path_factory, "wild-config", make)


@pytest.fixture(scope="session")
def wide_window(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Trained with a 32-token window; the script's ``args.attention_window`` is allenai's one-sided 16."""

    def make(folder: Path) -> tuple[Path, Path]:
        base = demo.make_base_model(folder / "base", tokenizer=False, attention_window=32)
        module = demo.make_module(base, args=argparse.Namespace(attention_window=16, seq_len=4096))
        return _fit(module, base, folder / "wide.ckpt"), base

    return once(tmp_path_factory, "wild-wide", make)


def test_a_wrong_config_no_longer_passes_the_check(cli, config_in_hparams, tmp_path):
    wrong = demo.make_base_model(tmp_path / "base16", tokenizer=False, attention_window=[16, 16])
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", config_in_hparams, "--output", out, "--base-model", wrong)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "attention_window is [8, 8] in hyper-parameter 'config' but [16, 16] in the base config" in line
    assert "--base-model hparams" in line and not out.exists()


def test_the_recorded_config_is_used_with_base_model_hparams(cli, config_in_hparams, tmp_path):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", config_in_hparams, "--output", out, "--base-model", "hparams")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["attention_window"] == [8, 8]
    assert _report(out)["base_model"]["spec"] == "hparams" and _report(out)["check"]["passed"]


def test_verify_compares_the_folders_config_with_the_recorded_one(cli, config_in_hparams, tmp_path):
    out = tmp_path / "model"
    assert cli("convert", "--checkpoint", config_in_hparams, "--output", out, "--base-model", "hparams").exit_code == 0
    config = json.loads((out / "config.json").read_text())
    config["attention_window"] = [16, 16]  # the reference would use it too: only the record can tell
    (out / "config.json").write_text(json.dumps(config))
    result = cli("verify", "--model", out, "--checkpoint", config_in_hparams)
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    line = one_error_line(result)
    assert "attention_window is [8, 8] in hyper-parameter 'config' but [16, 16] in the folder's config.json" in line


def test_base_model_hparams_without_a_recorded_config(cli, checkpoints, tmp_path):
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--base-model", "hparams")
    assert result.exit_code == 1
    assert "needs a model config in the checkpoint's hyper-parameters" in one_error_line(result)


def test_a_single_field_in_a_namespace_is_compared(cli, wide_window, base_model, tmp_path):
    ckpt, right = wide_window
    result = cli("convert", "--checkpoint", ckpt, "--output", tmp_path / "wrong", "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "attention_window is 16 in hyper-parameter 'args.attention_window' but 8 in the base config" in line
    # allenai's one-sided 16 is transformers' two-sided 32: no false alarm with the right base config
    out = tmp_path / "right"
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", right)
    assert result.exit_code == 0, result.stderr
    assert "argparse.Namespace" in _report(out)["source"]["placeholders"], "read without running the Namespace"


# --- 7. folders the check must refuse -----------------------------------------------------------


@pytest.fixture(scope="module")
def plain_folder(checkpoints, base_model, tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from longformer_action.cli import main

    out = tmp_path_factory.mktemp("plain") / "model"
    args = ["convert", "--checkpoint", str(checkpoints["plain"]), "--output", str(out), "--base-model", str(base_model)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    return out


def _tampered(source: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    change(folder)
    return folder


def _window_2(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    assert config["attention_window"] in ([8, 8], 8)
    config["attention_window"] = [2, 2]
    (folder / "config.json").write_text(json.dumps(config))


def _nan_weights(folder: Path) -> None:
    weights = load_file(folder / "model.safetensors")
    weights["longformer.encoder.layer.0.output.dense.weight"][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _cut_weights(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (_window_2, ["attention_window [2, 2] where the reference has [8, 8]"]),
        (_nan_weights, ["NaN or inf", "differs from its source"]),
        (_cut_weights, ["weights file model.safetensors cannot be read"]),
    ],
    ids=["attention-window-2", "nan-weights", "truncated-weights"],
)
def test_verify_refuses_a_broken_folder_with_exit_3(
    cli, plain_folder, checkpoints, base_model, tmp_path, change, fragments
):
    folder = _tampered(plain_folder, tmp_path, change)
    result = cli("verify", "--model", folder, "--checkpoint", checkpoints["plain"], "--base-model", base_model)
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    line = one_error_line(result)
    for fragment in fragments:
        assert fragment in line


def test_verify_without_base_model_blames_the_folders_config(cli, plain_folder, checkpoints, tmp_path):
    # the reference runs with the folder's own config, and that config cannot run: the folder is at fault
    folder = _tampered(plain_folder, tmp_path, _window_2)
    result = cli("verify", "--model", folder, "--checkpoint", checkpoints["plain"])
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    line = one_error_line(result)
    assert "the folder's config.json cannot run the checkpoint's weights" in line and "attention_window [2, 2]" in line


def test_verify_without_base_model_sees_a_config_edited_after_the_conversion(cli, plain_folder, checkpoints, tmp_path):
    # an edit that still runs, and changes the logits less than the tolerance: only the report's SHA-256 sees it
    def eps(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config["layer_norm_eps"] = 1e-5
        (folder / "config.json").write_text(json.dumps(config))

    folder = _tampered(plain_folder, tmp_path, eps)
    result = cli("verify", "--model", folder, "--checkpoint", checkpoints["plain"])
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    assert "config.json changed since the conversion" in one_error_line(result)
    result = cli("verify", "--model", plain_folder, "--checkpoint", checkpoints["plain"])
    assert result.exit_code == 0, result.stderr


# --- 8. keys that are not model weights, and missing parts --------------------------------------


@pytest.fixture(scope="module")
def loss_weights(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier with a weighted loss (``loss_fn.weight``) and a class-prior buffer (``class_prior``)."""
    from torch import nn

    module = demo.make_module(base_model, task="text-classification")
    module.loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 4.0]))
    module.register_buffer("class_prior", torch.tensor([0.5, 0.3, 0.2]))
    return _fit(module, base_model, tmp_path_factory.mktemp("loss") / "loss.ckpt", task="text-classification")


def _saves_trained_only(module) -> None:
    def on_save_checkpoint(checkpoint: dict) -> None:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                checkpoint["state_dict"].pop(name)

    module.strict_loading = False
    module.on_save_checkpoint = on_save_checkpoint


@pytest.fixture(scope="module")
def partial(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Modules that froze part of the model and saved only what they trained (``strict_loading=False``)."""
    folder = tmp_path_factory.mktemp("partial")
    frozen = demo.make_module(base_model, layout="origin")
    frozen.model.embeddings.requires_grad_(False)
    _saves_trained_only(frozen)
    probe = demo.make_module(base_model, layout="origin")
    probe.model.requires_grad_(False)
    _saves_trained_only(probe)
    return {
        "frozen-embeddings": _fit(frozen, base_model, folder / "frozen.ckpt"),
        "linear-probe": _fit(probe, base_model, folder / "probe.ckpt"),
    }


def test_keys_that_are_not_weights_are_dropped_by_name(cli, loss_weights, base_model, tmp_path):
    out = tmp_path / "model"
    args = ("convert", "--checkpoint", loss_weights, "--output", out, "--base-model", base_model)
    result = cli(*args)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "checkpoint keys 'class_prior' [3], 'loss_fn.weight' [3] are neither the encoder nor the head" in line
    assert "a text classification model" in line and "Pass --drop class_prior --drop loss_fn." in line
    result = cli(*args, "--drop", "loss_fn.")
    assert result.exit_code == 1 and "'class_prior' [3] are neither the encoder nor the head" in one_error_line(result)
    result = cli(*args, "--drop", "loss_fn.", "--drop", "class_prior")
    assert result.exit_code == 0, result.stderr
    assert _report(out)["task"] == "text-classification"
    dropped = _dropped(out)
    assert dropped["loss_fn.weight"] == dropped["class_prior"] == "dropped by --drop"
    card = (out / "README.md").read_text()
    assert "- `loss_fn.weight`: dropped by --drop" in card and "- `class_prior`: dropped by --drop" in card


def test_drop_that_matches_nothing_is_an_error(cli, loss_weights, base_model, tmp_path):
    result = cli(
        "convert", "--checkpoint", loss_weights, "--output", tmp_path / "m", "--base-model", base_model,
        "--drop", "loss.",
    )  # fmt: skip
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "--drop 'loss.' matches no key" in line and "'loss_fn.'" in line


def test_missing_embeddings_name_what_is_present_and_missing(cli, partial, base_model, tmp_path):
    result = cli(
        "convert", "--checkpoint", partial["frozen-embeddings"], "--output", tmp_path / "m", "--base-model", base_model
    )
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "part of a Longformer encoder under 'model.'" in line
    assert "the attention layers (2 layers, with global attention)" in line and "the pooler" in line
    assert "'model.embeddings.word_embeddings.weight'" in line and "strict_loading=False" in line


def test_a_head_alone_names_its_keys(cli, partial, base_model, tmp_path):
    result = cli(
        "convert", "--checkpoint", partial["linear-probe"], "--output", tmp_path / "m", "--base-model", base_model
    )
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "it holds 2 keys ('qa_outputs.bias', 'qa_outputs.weight')" in line and "strict_loading=False" in line


# --- 9. trained tensors beside a class head (a CRF over a token classifier) ----------------------


def test_a_crf_beside_a_tagger_names_every_way_out(cli, crf_checkpoint, base_model, tmp_path):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", crf_checkpoint, "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "'crf.end_transitions' [3], 'crf.start_transitions' [3], 'crf.transitions' [3, 3]" in line
    assert "a token classification model (LongformerForTokenClassification" in line
    assert "a CRF's transitions over 3 tags, which decode the head's logits (Viterbi decoding, not argmax)" in line
    assert "Pass --keep crf. to keep them: the folder is LongformerForTokenClassification" in line
    assert "--drop crf. if they are not model weights" in line and "without them the tags are the argmax" in line
    assert "--task feature-extraction to export the encoder alone, with the head and these in custom_head" in line
    assert not out.exists()
    shown = cli("inspect", "--checkpoint", crf_checkpoint).stdout
    assert "crf:           'crf.' over 3 tags (--keep crf. keeps it beside the tagger)" in shown
    assert "Pass --keep crf." in shown


def _crf_module(base: Path, checkpoint: Path):
    module = demo.make_module(base, task="token-classification", layout="crf")
    module.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    return module.eval()


def test_keep_converts_the_tagger_and_keeps_the_crf(cli, crf_checkpoint, base_model, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out = tmp_path / "model"
    args = ("--checkpoint", crf_checkpoint, "--output", out, "--base-model", base_model, "--keep", "crf.")
    result = cli("convert", *args)
    assert result.exit_code == 0, result.stderr
    state = torch.load(crf_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LongformerForTokenClassification"]
    head = load_file(out / "custom_head.safetensors")
    assert set(head) == {"crf.transitions", "crf.start_transitions", "crf.end_transitions"}
    assert all(torch.equal(head[k], state[k]) for k in head)
    report = _report(out)
    kept = report["conversion"]["custom_head"]
    assert [(t["key"], t["shape"], t["kept_by"]) for t in kept["tensors"]] == [
        ("crf.end_transitions", [3], "--keep"),
        ("crf.start_transitions", [3], "--keep"),
        ("crf.transitions", [3, 3], "--keep"),
    ]
    assert kept["crfs"] == [{"prefix": "crf.", "tags": 3}]
    assert report["conversion"]["selection"]["keep"] == ["crf."]
    assert report["check"]["passed"] and report["check"]["tensors_compared"] == len(state)
    fates = {k["source"]: k for k in report["mapping"]["keys"] if k["fate"] != "mapped"}
    assert set(fates) == {"crf.transitions", "crf.start_transitions", "crf.end_transitions"}
    assert all(f["fate"] == "kept" and f["file"] == "custom_head.safetensors" for f in fates.values())
    assert fates["crf.transitions"]["reason"].startswith("kept beside the model in custom_head.safetensors by --keep")
    assert (report["mapping"]["dropped"], report["mapping"]["kept"]) == (0, 3)
    card = (out / "README.md").read_text()
    assert "Dropped keys" not in card and ", 0 dropped, 3 kept beside the model |" in card
    assert "| `crf.transitions` | [3, 3] | float32 | `--keep` |" in card
    assert "are a CRF over 3 tags: they decode the classifier's logits" in card and "Viterbi decoding" in card
    assert "# trained with a CRF, kept in custom_head.safetensors: outputs.logits are its emission scores" in card
    from longformer_action.publishing.summary import summary_markdown

    summary = summary_markdown(report)
    assert "Dropped keys" not in summary and "0 dropped, 3 kept beside the model" in summary
    assert "### Kept beside the model: `custom_head.safetensors`" in summary
    assert "| `crf.transitions` | [3, 3] | float32 | `--keep` |" in summary

    # what the module predicted: its CRF's Viterbi path over its logits; the folder and the kept tensors give it
    module = _crf_module(base_model, crf_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer([" ".join(demo.CORPUS[:3]), demo.CORPUS[3]], return_tensors="pt", padding=True)
    none = torch.zeros_like(inputs["input_ids"])
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    crf = demo.make_crf(3)
    crf.load_state_dict({k.removeprefix("crf."): v for k, v in head.items()})
    with torch.inference_mode():
        want = module.crf.decode(module(inputs["input_ids"], inputs["attention_mask"], none)["logits"])
        got = crf.decode(model(**inputs).logits)
        argmax = model(**inputs).logits.argmax(-1)
    assert torch.equal(got, want)
    assert not torch.equal(argmax, want), "the CRF changes the prediction: dropping it would lose that"

    assert cli("verify", "--model", out, "--checkpoint", crf_checkpoint).exit_code == 0, "the report's --keep"
    tampered = dict(head)
    tampered["crf.transitions"] = head["crf.transitions"] + 1e-3
    save_file(tampered, out / "custom_head.safetensors", metadata={"format": "pt"})
    result = cli("verify", "--model", out, "--checkpoint", crf_checkpoint)
    assert result.exit_code == 3
    assert "tensor 'crf.transitions' differs from its source" in one_error_line(result)


def test_the_other_ways_out_each_convert(cli, crf_checkpoint, base_model, tmp_path):
    base = ("--checkpoint", crf_checkpoint, "--base-model", base_model)
    dropped = tmp_path / "dropped"
    assert cli("convert", *base, "--output", dropped, "--drop", "crf.").exit_code == 0
    assert _dropped(dropped)["crf.transitions"] == "dropped by --drop"
    assert not (dropped / "custom_head.safetensors").exists()
    encoder = tmp_path / "encoder"
    assert cli("convert", *base, "--output", encoder, "--task", "feature-extraction").exit_code == 0
    kept = _report(encoder)["conversion"]["custom_head"]
    assert {t["key"] for t in kept["tensors"]} == {
        "model.classifier.weight", "model.classifier.bias", "crf.transitions", "crf.start_transitions",
        "crf.end_transitions",
    }  # fmt: skip
    assert {t["kept_by"] for t in kept["tensors"]} == {"--task feature-extraction"}
    assert kept["crfs"] == [{"prefix": "crf.", "tags": 3}]
    result = cli("convert", *base, "--output", tmp_path / "both", "--keep", "crf.", "--drop", "crf.transitions")
    assert "--drop and --keep both name 'crf.transitions'" in one_error_line(result)
    result = cli("convert", *base, "--output", tmp_path / "none", "--keep", "crf_layer.")
    assert "--keep 'crf_layer.' matches no key" in one_error_line(result)
