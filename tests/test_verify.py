"""The check must pass on a faithful folder and fail, naming what differs, on every tampered one."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from longformer_action.errors import EXIT_CHECK_FAILED
from longformer_action.writing import folder as convert_module

from .helpers import one_error_line


@pytest.fixture(scope="module")
def converted(checkpoints, base_model, tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from longformer_action.cli import main

    out = tmp_path_factory.mktemp("verify") / "model"
    result = CliRunner().invoke(
        main,
        [
            "convert",
            "--checkpoint",
            str(checkpoints["origin-lightning"]),
            "--output",
            str(out),
            "--base-model",
            str(base_model),
        ],
    )
    assert result.exit_code == 0, result.stderr
    return out


def _rewrite(folder: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _swap_layers(t: dict[str, torch.Tensor]) -> None:
    for key in [k for k in t if ".layer.0." in k]:
        other = key.replace(".layer.0.", ".layer.1.")
        t[key], t[other] = t[other], t[key]


def _zero_head_bias(t: dict[str, torch.Tensor]) -> None:
    t["qa_outputs.bias"] = torch.zeros_like(t["qa_outputs.bias"])


def _transpose(t: dict[str, torch.Tensor]) -> None:
    key = "longformer.encoder.layer.0.attention.self.query.weight"
    assert t[key].shape[0] == t[key].shape[1]
    t[key] = t[key].t().contiguous()


def _fp16_round_trip(t: dict[str, torch.Tensor]) -> None:
    for key, value in t.items():
        t[key] = value.half().float()


def _remove_tensor(t: dict[str, torch.Tensor]) -> None:
    del t["longformer.encoder.layer.1.output.dense.weight"]


TAMPERS = {
    "swapped-layers": (_swap_layers, ["longformer.encoder.layer.0.", "start_logits"]),
    "zero-head-bias": (_zero_head_bias, ["'qa_outputs.bias' differs", "end_logits"]),
    "transposed": (_transpose, ["'longformer.encoder.layer.0.attention.self.query.weight' differs", "output"]),
    "fp16-round-trip": (_fp16_round_trip, ["differs from its source", "tolerance 1e-05"]),
    "removed-tensor": (_remove_tensor, ["'longformer.encoder.layer.1.output.dense.weight' is missing", "missing keys"]),
}


def test_faithful_folder_passes_with_zero_difference(cli, converted, checkpoints, base_model, tmp_path):
    report = tmp_path / "report.json"
    result = cli(
        "verify", "--model", converted, "--checkpoint", checkpoints["origin-lightning"], "--base-model", base_model,
        "--report", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())["check"]
    assert data["passed"] and data["max_abs_diff"] == 0.0
    assert [o["name"] for o in data["outputs"]] == ["start_logits", "end_logits"]
    assert data["tensors_compared"] == 51 and not data["tensor_failures"]
    assert all(not keys for keys in data["loading"].values())
    # the inputs exercise padding, two lengths, and more than one attention window
    lengths, window = data["inputs"]["lengths"], data["inputs"]["attention_window"]
    assert len(set(lengths)) == 2 and min(lengths) > window and data["inputs"]["tokenizer"]
    assert data["smoke"]["input"] == "Where is the Eiffel Tower?" and data["smoke"]["output"]


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_folder_fails(cli, converted, checkpoints, base_model, tmp_path, name):
    change, fragments = TAMPERS[name]
    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    _rewrite(folder, change)
    report = tmp_path / "report.json"
    result = cli(
        "verify", "--model", folder, "--checkpoint", checkpoints["origin-lightning"], "--base-model", base_model,
        "--report", report,
    )  # fmt: skip
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    line = one_error_line(result)
    assert "does not compute what the checkpoint computed" in line
    failures = " | ".join(json.loads(report.read_text())["check"]["failures"])
    for fragment in fragments:
        assert fragment in failures, failures


def test_changed_attention_window_fails(cli, converted, checkpoints, base_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    config = json.loads((folder / "config.json").read_text())
    config["attention_window"] = [4] * len(config["attention_window"])
    (folder / "config.json").write_text(json.dumps(config))
    report = tmp_path / "report.json"
    result = cli(
        "verify", "--model", folder, "--checkpoint", checkpoints["origin-lightning"], "--base-model", base_model,
        "--report", report,
    )  # fmt: skip
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    check = json.loads(report.read_text())["check"]
    assert not check["tensor_failures"], "the weights are intact: only the forward pass can see this"
    assert any(f.startswith("output 'start_logits' differs by") for f in check["failures"])
    assert "start_logits" in one_error_line(result)


def test_a_config_edited_after_the_conversion_is_named_and_never_logged_as_passed(cli, trained_checkpoint, base_model,
                                                                                    tmp_path):  # fmt: skip
    folder, ckpt = tmp_path / "model", trained_checkpoint("text-classification")
    result = cli("convert", "--checkpoint", ckpt, "--output", folder, "--base-model", base_model, "--no-check")
    assert result.exit_code == 0, result.stderr
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "NEG", "1": "NEU", "2": "POS"}  # runs the same: only the report sees the edit
    (folder / "config.json").write_text(json.dumps(config))
    result = cli("verify", "--model", folder, "--checkpoint", ckpt)
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    assert "check: passed" not in result.stderr and "check: FAILED" in result.stderr
    line = one_error_line(result)
    assert (
        "config.json changed since the conversion (its SHA-256 differs from conversion-report.json): id2label is "
        '{"0": "NEG", "1": "NEU", "2": "POS"} where conversion-report.json records {"0": "LABEL_0"' in line
    )
    assert "Restore config.json as the conversion wrote it" in line
    assert "--global-attention" not in line and "does not compute" not in line


def test_a_kept_tensor_changed_after_the_conversion_names_its_file(cli, crf_checkpoint, base_model, tmp_path):
    folder = tmp_path / "model"
    result = cli("convert", "--checkpoint", crf_checkpoint, "--output", folder, "--base-model", base_model,
                 "--keep", "crf.", "--no-check")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    head = load_file(folder / "custom_head.safetensors")
    head["crf.transitions"] = head["crf.transitions"] * 2
    save_file(head, folder / "custom_head.safetensors")
    result = cli("verify", "--model", folder, "--checkpoint", crf_checkpoint)
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    assert "check: FAILED" in result.stderr
    line = one_error_line(result)
    assert "tensor 'crf.transitions' differs from its source" in line
    assert "Restore custom_head.safetensors as the conversion wrote it" in line and "--global-attention" not in line


@pytest.mark.parametrize("names", [("--labels", "a,b,c"), ()])
def test_a_checkpoint_whose_head_has_another_label_count_is_named_as_such(cli, trained_checkpoint, base_model,
                                                                           tmp_path, names):  # fmt: skip
    folder = tmp_path / "model"
    result = cli("convert", "--checkpoint", trained_checkpoint("text-classification"), "--output", folder,
                 "--base-model", base_model, "--no-check", *names)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    result = cli("verify", "--model", folder, "--checkpoint", trained_checkpoint("text-classification", num_labels=1))
    assert result.exit_code == 1, result.stderr
    line = one_error_line(result)
    assert "is not the checkpoint" in line
    assert "the folder's config.json names 3 labels but the head has 1 outputs" in line
    assert "--labels" not in line, "verify was not given --labels"


def test_half_precision_folder_passes_within_its_tolerance(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "model"
    result = cli(
        "convert",
        "--checkpoint",
        checkpoints["plain"],
        "--output",
        out,
        "--base-model",
        base_model,
        "--dtype",
        "float16",
    )
    assert result.exit_code == 0, result.stderr
    result = cli("verify", "--model", out, "--checkpoint", checkpoints["plain"], "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    # and a tolerance tighter than the rounding makes the same folder fail
    result = cli(
        "verify", "--model", out, "--checkpoint", checkpoints["plain"], "--base-model", base_model, "--atol", "1e-9"
    )
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "(tolerance 1e-09)" in one_error_line(result)


def test_failed_check_in_convert_publishes_nothing(cli, checkpoints, base_model, tmp_path, monkeypatch):
    original = convert_module._write_safetensors

    def faulty(path, tensors, **kwargs):  # a converter bug: one weight written scaled
        tensors = dict(tensors)
        key = "longformer.encoder.layer.1.intermediate.dense.weight"
        tensors[key] = tensors[key] * 1.01
        return original(path, tensors, **kwargs)

    monkeypatch.setattr(convert_module, "_write_safetensors", faulty)
    out, report = tmp_path / "model", tmp_path / "report.json"
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model, "--report", report
    )
    assert result.exit_code == EXIT_CHECK_FAILED, result.stderr
    line = one_error_line(result)
    assert "'longformer.encoder.layer.1.intermediate.dense.weight' differs" in line and "nothing was written" in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    data = json.loads(report.read_text())
    assert data["status"] == "failed" and not data["check"]["passed"]
    assert {o["name"]: o["passed"] for o in data["check"]["outputs"]} == {"start_logits": False, "end_logits": False}


@pytest.mark.parametrize("target", ["config.json", "checkpoint"])
def test_a_report_that_would_replace_a_file_verify_reads_is_refused(cli, converted, checkpoints, tmp_path, target):
    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    ckpt = tmp_path / "best.ckpt"
    shutil.copy(checkpoints["origin-lightning"], ckpt)
    before = {p: p.read_bytes() for p in [ckpt, *folder.iterdir()]}
    report = folder / "config.json" if target == "config.json" else ckpt
    result = cli("verify", "--model", folder, "--checkpoint", ckpt, "--report", report)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"--report {report}" in line and "another --report" in line
    assert (f"inside the --model folder {folder}" if target == "config.json" else f"is the checkpoint {ckpt}") in line
    assert {p: p.read_bytes() for p in [ckpt, *folder.iterdir()]} == before


def test_verify_folder_without_config(cli, checkpoints, tmp_path):
    result = cli("verify", "--model", tmp_path, "--checkpoint", checkpoints["plain"])
    assert result.exit_code == 1
    assert "has no config.json" in one_error_line(result)


def test_check_without_tokenizer_uses_three_separators(checkpoints, base_model_no_tokenizer, tmp_path):
    from transformers import LongformerConfig

    from longformer_action.checking.inputs import make_inputs
    from longformer_action.registry import tasks

    config = LongformerConfig.from_pretrained(base_model_no_tokenizer)
    qa = tasks.get("question-answering")
    inputs = make_inputs(qa, config)
    ids = inputs["input_ids"]
    assert ((ids == config.sep_token_id).sum(dim=1) == 3).all()
    assert (ids[:, 0] == config.bos_token_id).all()
    assert inputs["attention_mask"].sum(dim=1).tolist()[0] > inputs["attention_mask"].sum(dim=1).tolist()[1]
    # seeded: the same inputs every time
    assert torch.equal(make_inputs(qa, config)["input_ids"], ids)


USER_MODULE = '''
import torch
from torch import nn
import pytorch_lightning as pl
from transformers import LongformerConfig, LongformerModel


class TriviaQA(pl.LightningModule):
    """The origin layout, with the head applied the way allenai's code applied it."""

    def __init__(self, config_dir: str, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.model = LongformerModel(LongformerConfig.from_pretrained(config_dir))
        self.qa_outputs = nn.Linear(self.model.config.hidden_size, 2)

    def forward(self, input_ids, attention_mask, global_attention_mask):
        hidden = self.model(input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask)[0]
        start, end = self.qa_outputs(hidden).split(1, dim=-1)
        return start.squeeze(-1), end.squeeze(-1)

    def training_step(self, batch, batch_idx):
        start, end = self(batch["input_ids"], batch["attention_mask"], batch["global_attention_mask"])
        loss = nn.functional.cross_entropy(start, batch["start"]) + nn.functional.cross_entropy(end, batch["end"])
        return loss / 2

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
'''


def test_users_lightning_module_as_reference(cli, base_model, tmp_path, monkeypatch):
    import importlib

    from longformer_action import demo

    (tmp_path / "user_qa.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("user_qa").TriviaQA(str(base_model))
    ckpt = demo.fit_and_save(module, demo.batches(base_model, 2), tmp_path / "user.ckpt")
    out, report = tmp_path / "model", tmp_path / "report.json"

    refused = cli(
        "convert",
        "--checkpoint",
        ckpt,
        "--output",
        out,
        "--base-model",
        base_model,
        "--lightning-module",
        "user_qa:TriviaQA",
    )
    assert refused.exit_code == 2 and "--trust-checkpoint" in refused.stderr
    assert not out.exists()

    result = cli(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, "--report", report,
        "--lightning-module", "user_qa:TriviaQA", "--trust-checkpoint",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    check = json.loads(report.read_text())["check"]
    assert check["inputs"]["reference"] == "the LightningModule's forward"
    assert check["passed"] and check["max_abs_diff"] < 1e-5

    # the user's module is a real reference: a folder with a tampered head fails against it
    _rewrite(out, _zero_head_bias)
    result = cli(
        "verify", "--model", out, "--checkpoint", ckpt, "--lightning-module", "user_qa:TriviaQA", "--trust-checkpoint"
    )
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "end_logits" in one_error_line(result)

    missing = cli(
        "verify", "--model", out, "--checkpoint", ckpt, "--lightning-module", "nope_pkg:X", "--trust-checkpoint"
    )
    assert missing.exit_code == 1 and "cannot import --lightning-module nope_pkg:X" in one_error_line(missing)


def test_a_lightning_module_whose_forward_takes_no_global_attention_mask(cli, base_model, tmp_path, monkeypatch):
    import importlib

    from longformer_action import demo

    code = USER_MODULE.replace(
        "def forward(self, input_ids, attention_mask, global_attention_mask):",
        "def forward(self, input_ids, attention_mask):",
    ).replace("global_attention_mask=global_attention_mask", "global_attention_mask=None")
    code = code.replace('batch["attention_mask"], batch["global_attention_mask"])', 'batch["attention_mask"])')
    (tmp_path / "user_plain.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("user_plain").TriviaQA(str(base_model))
    ckpt = demo.fit_and_save(module, demo.batches(base_model, 2), tmp_path / "user.ckpt")
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model,
        "--lightning-module", "user_plain:TriviaQA", "--trust-checkpoint",
    )  # fmt: skip
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "user_plain:TriviaQA.forward failed on the check's inputs (TypeError" in line
    assert "global_attention_mask as keyword arguments" in line and not out.exists()
