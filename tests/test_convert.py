"""`convert` end to end through the CLI: round trips, dtypes, shards, all-or-nothing output, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from longformer_action import demo
from longformer_action.errors import EXIT_CHECK_FAILED
from longformer_action.reading.checkpoint import read_checkpoint

from .helpers import one_error_line


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    tensors = {}
    for name in files:
        with safe_open(folder / name, framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    return tensors


@pytest.mark.parametrize(
    "name", ["wrapped-pytorch_lightning", "wrapped-lightning", "origin-pytorch_lightning", "origin-lightning", "plain"]
)
def test_round_trip_every_tensor_equals_its_source(cli, checkpoints, base_model, tmp_path, name):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", checkpoints[name], "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr

    source = torch.load(checkpoints[name], weights_only=False, map_location="cpu")["state_dict"]
    saved = saved_tensors(out)
    report = json.loads((out / "conversion-report.json").read_text())
    fates = {k["source"]: k for k in report["mapping"]["keys"]}
    assert set(fates) == set(source), "every key of the checkpoint is accounted for"
    for key, fate in fates.items():
        if fate["fate"] == "mapped":
            assert torch.equal(saved[fate["target"]], source[key]), key
        else:
            assert "pooler" in key
    assert len(saved) == report["mapping"]["mapped"]

    model, info = AutoModelForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert type(model).__name__ == "LongformerForQuestionAnswering"
    assert AutoTokenizer.from_pretrained(out)("a question", "a context")["input_ids"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LongformerForQuestionAnswering"]

    assert report["status"] == "ok" and report["check"]["passed"]
    assert report["source"]["sha256"] == read_checkpoint(checkpoints[name]).sha256
    assert report["source"]["global_step"] == 3
    listed = {f["name"]: f for f in report["files"]}
    assert set(listed) == {p.name for p in out.iterdir()} - {"conversion-report.json", "SHA256SUMS"}
    assert listed["model.safetensors"]["bytes"] == (out / "model.safetensors").stat().st_size
    card = (out / "README.md").read_text()
    assert report["source"]["sha256"] in card and "passed" in card
    assert "read:" in result.stderr and "save:" in result.stderr and "check: passed" in result.stderr


def test_output_is_not_world_private(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "model"
    assert (
        cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model).exit_code == 0
    )
    assert out.stat().st_mode & 0o055 == 0o055 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("float16", torch.float16), ("bfloat16", torch.bfloat16)])
def test_dtype_cast(cli, checkpoints, base_model, tmp_path, dtype, torch_dtype):
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model, "--dtype", dtype
    )
    assert result.exit_code == 0, result.stderr
    source = torch.load(checkpoints["plain"], weights_only=False, map_location="cpu")["state_dict"]
    saved = saved_tensors(out)
    assert {t.dtype for t in saved.values()} == {torch_dtype}
    assert torch.equal(saved["qa_outputs.weight"], source["model.qa_outputs.weight"].to(torch_dtype))
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["dtype"] == {"requested": dtype, "saved": dtype}
    assert report["check"]["passed"] and report["check"]["max_abs_diff"] > 0
    row = (
        f"| every tensor equals its source after the cast to {dtype} | {report['check']['tensors_compared']} tensors |"
    )
    assert row in (out / "README.md").read_text(), "exact only after the cast --dtype asked for"
    from longformer_action.publishing.summary import summary_markdown

    assert row in summary_markdown(report)


def test_keep_preserves_a_half_precision_checkpoint(cli, checkpoints, base_model, tmp_path):
    state = torch.load(checkpoints["plain"], weights_only=False, map_location="cpu")["state_dict"]
    half = tmp_path / "half.pt"
    torch.save({k: v.to(torch.bfloat16) for k, v in state.items()}, half)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", half, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    assert {t.dtype for t in saved_tensors(out).values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert "| every tensor equals its source | " in (out / "README.md").read_text(), "no cast: exact as it is"


def test_sharded_output(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "model"
    result = cli(
        "convert",
        "--checkpoint",
        checkpoints["plain"],
        "--output",
        out,
        "--base-model",
        base_model,
        "--max-shard-size",
        "60kB",
    )
    assert result.exit_code == 0, result.stderr
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) >= 3 and not (out / "model.safetensors").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    for shard in out.glob("model-*.safetensors"):
        with safe_open(shard, "pt") as f:
            data_bytes = [f.get_tensor(k).nbytes for k in f.keys()]  # noqa: SIM118
        assert sum(data_bytes) <= 60_000 or len(data_bytes) == 1, shard.name
    _, info = AutoModelForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]


def test_no_tokenizer_in_base(cli, checkpoints, base_model_no_tokenizer, tmp_path):
    # a base without tokenizer files: same vocabulary size needed, so build the checkpoint from it
    ckpt = demo.train_checkpoint(base_model_no_tokenizer, tmp_path / "c.ckpt", steps=1)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model_no_tokenizer)
    assert result.exit_code == 0, result.stderr
    assert not list(out.glob("tokenizer*"))
    assert json.loads((out / "conversion-report.json").read_text())["check"]["inputs"]["tokenizer"] is False


# --- all or nothing ---------------------------------------------------------------------------


def test_existing_output_is_left_untouched(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    assert "--overwrite" in one_error_line(result)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no staging folder left behind"


def test_overwrite_replaces(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model, "--overwrite"
    )
    assert result.exit_code == 0, result.stderr
    assert not (out / "old.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_empty_existing_output_is_used(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    assert (
        cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model).exit_code == 0
    )
    assert (out / "config.json").exists()


# --- outputs apart from the inputs: nothing read is ever replaced -----------------------------------------


def _same_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("where", ["folder", "parent", "file"])
def test_an_output_holding_the_checkpoint_is_refused_before_any_work(cli, checkpoints, base_model, tmp_path, where):
    runs = tmp_path / "runs"
    runs.mkdir()
    ckpt = runs / "best.ckpt"
    ckpt.write_bytes(checkpoints["plain"].read_bytes())
    before = _same_files(runs)
    output = {"folder": runs, "parent": tmp_path, "file": ckpt}[where]
    result = cli("convert", "--checkpoint", ckpt, "--output", output, "--base-model", base_model, "--overwrite")
    assert result.exit_code == 2, result.stderr
    line = one_error_line(result)
    assert f"--output {output}" in line and f"the checkpoint {ckpt}" in line and "another --output" in line
    assert "read:" not in result.stderr, "refused before the checkpoint is read"
    assert _same_files(runs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"], "no lock or staging folder left"


def test_an_output_that_is_the_base_models_folder_is_refused(cli, checkpoints, base_model, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(base_model, base)
    before = _same_files(base)
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", base, "--base-model", base, "--overwrite")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"--output {base} is the base model's folder {base}" in line
    assert _same_files(base) == before


@pytest.mark.parametrize("command", ["convert", "demo"])
def test_an_empty_output_is_the_current_folder_and_a_usage_error(cli, checkpoints, base_model, tmp_path, monkeypatch,
                                                                   command):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    args = ["--checkpoint", checkpoints["plain"], "--base-model", base_model, "--overwrite"]
    result = cli(command, *(args if command == "convert" else []), "--output", "")
    assert result.exit_code == 2, result.stderr
    line = one_error_line(result)
    assert "'--output'" in line and "is the current folder (so is an empty value)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_output_holding_the_current_folder_is_refused(cli, checkpoints, base_model, tmp_path, monkeypatch):
    here = tmp_path / "project" / "src"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    out = tmp_path / "project"
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model,
                 "--overwrite")  # fmt: skip
    assert result.exit_code == 2
    assert f"--output {out} holds the current folder {here}" in one_error_line(result)
    assert here.is_dir()


@pytest.mark.parametrize("where", ["inside-output", "checkpoint"])
def test_a_report_that_would_replace_an_input_or_be_replaced_is_refused(cli, checkpoints, base_model, tmp_path, where):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(checkpoints["plain"].read_bytes())
    out = tmp_path / "model"
    report = out / "mine.json" if where == "inside-output" else ckpt
    result = cli("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, "--report", report)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"--report {report}" in line
    assert (f"inside --output {out}" if where == "inside-output" else f"is the checkpoint {ckpt}") in line
    assert ckpt.read_bytes() == checkpoints["plain"].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


def test_nested_output_parents_are_created_and_removed_on_failure(cli, checkpoints, base_model, tmp_path):
    out = tmp_path / "a" / "b" / "model"
    result = cli("convert", "--checkpoint", tmp_path / "nope.ckpt", "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    assert not (tmp_path / "a").exists()
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", base_model)
    assert result.exit_code == 0 and (out / "config.json").exists()


def test_unwritable_output(cli, checkpoints, base_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", blocker / "model", "--base-model", base_model
    )
    assert result.exit_code == 1
    assert "Choose an --output in a writable folder" in one_error_line(result)
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", blocker, "--base-model", base_model)
    assert "exists and is a file" in one_error_line(result)


# --- bad input: one line, the cause and the fix, exit 1, nothing written ------------------------


def _bert_checkpoint(path: Path) -> Path:
    import pytorch_lightning as pl
    from transformers import BertConfig, BertForQuestionAnswering

    class BertQA(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            cfg = BertConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=400
            )
            self.model = BertForQuestionAnswering(cfg)

        def training_step(self, batch, batch_idx):
            out = self.model(input_ids=batch["input_ids"], start_positions=batch["start"], end_positions=batch["end"])
            return out.loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    batches = [
        {"input_ids": torch.randint(5, 400, (2, 16)), "start": torch.tensor([3, 4]), "end": torch.tensor([5, 6])}
    ]
    return demo.fit_and_save(BertQA(), batches, path)


def _encoder_only_checkpoint(path: Path, source: Path) -> Path:
    ckpt = torch.load(source, weights_only=False, map_location="cpu")
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "qa_outputs" not in k}
    torch.save(ckpt, path)
    return path


def _unknown_keys_checkpoint(path: Path, source: Path) -> Path:
    ckpt = torch.load(source, weights_only=False, map_location="cpu")
    ckpt["state_dict"]["teacher.proj.weight"] = torch.zeros(2, 2)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp, ck: tmp / "missing.ckpt", "does not exist. Check the --checkpoint path"),
        (lambda tmp, ck: tmp, "with no .ckpt file in it, and it is neither a transformers folder nor a distributed"),
        (
            lambda tmp, ck: (tmp / "t.ckpt", (tmp / "t.ckpt").write_text("not a checkpoint\n"))[0],
            "not a PyTorch checkpoint",
        ),
        (lambda tmp, ck: (tmp / "e.ckpt", (tmp / "e.ckpt").write_bytes(b""))[0], "is empty (0 bytes)"),
        (
            lambda tmp, ck: (tmp / "cut.ckpt", (tmp / "cut.ckpt").write_bytes(ck.read_bytes()[:50_000]))[0],
            "truncated or corrupt",
        ),
        (lambda tmp, ck: _bert_checkpoint(tmp / "bert.ckpt"), "not a Longformer"),
        (lambda tmp, ck: _unknown_keys_checkpoint(tmp / "unk.ckpt", ck), "'teacher.proj.weight'"),
    ],
    ids=["missing", "directory", "text", "empty", "truncated", "bert", "unknown-keys"],
)
def test_bad_checkpoints(cli, checkpoints, base_model, tmp_path, make, fragment):
    work = tmp_path / "in"
    work.mkdir()
    path = make(work, checkpoints["plain"])
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", path, "--output", out, "--base-model", base_model)
    assert result.exit_code == 1, result.stderr
    assert fragment in one_error_line(result)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], "nothing half-written beside --output"


def test_an_encoder_only_checkpoint_is_feature_extraction_unless_told_otherwise(cli, checkpoints, base_model, tmp_path):
    path = _encoder_only_checkpoint(tmp_path / "enc.ckpt", checkpoints["plain"])
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", path, "--output", out, "--base-model", base_model, "--task", "question-answering"
    )
    assert result.exit_code == 1
    assert "is not a question answering head" in one_error_line(result) and not out.exists()
    result = cli("convert", "--checkpoint", path, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LongformerModel"]


def test_config_mismatch(cli, checkpoints, tmp_path):
    other = demo.make_base_model(tmp_path / "other", tokenizer=False, hidden_size=48, num_attention_heads=3)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", other)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "tensors disagree" in line and "has shape [32] but the config needs [48]" in line and "--base-model" in line
    assert not out.exists()


def test_report_written_on_failure(cli, checkpoints, tmp_path):
    other = demo.make_base_model(tmp_path / "other", tokenizer=False, num_hidden_layers=3)
    report = tmp_path / "report.json"
    out = tmp_path / "model"
    result = cli(
        "convert", "--checkpoint", checkpoints["plain"], "--output", out, "--base-model", other, "--report", report
    )
    assert result.exit_code == 1
    assert "(the checkpoint has 2 layers, the base config 3)" in one_error_line(result)
    data = json.loads(report.read_text())
    assert data["status"] == "failed" and "lacks" in data["error"]
    assert not out.exists()


def test_usage_errors_exit_2(cli, checkpoints, tmp_path):
    assert cli("convert", "--checkpoint", checkpoints["plain"]).exit_code == 2
    bad = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--dtype", "int8")
    assert bad.exit_code == 2 and "int8" in bad.stderr
    bad = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--max-shard-size", "big")
    assert bad.exit_code == 2 and "500MB" in bad.stderr
    for labels, says in (("a,,b", "has an empty label"), ("a,b,a", "names a twice")):
        bad = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "m", "--labels", labels)
        assert bad.exit_code == 2 and says in one_error_line(bad), "a usage error at parse time, before any work"
    assert not (tmp_path / "m").exists()


def test_labels_that_replace_different_recorded_labels_are_one_warning_and_in_the_report(
    cli, fabric_checkpoint, base_model, tmp_path
):
    from .conftest import FABRIC_LABELS  # what the Fabric checkpoint's hyper-parameters record

    common = ["convert", "--checkpoint", fabric_checkpoint, "--base-model", base_model]
    swapped = cli(*common, "--output", tmp_path / "swapped", "--labels", "O,I-PER,B-PER")
    same = cli(*common, "--output", tmp_path / "same", "--labels", ",".join(FABRIC_LABELS), "--no-check")
    assert swapped.exit_code == 0 and same.exit_code == 0, swapped.stderr + same.stderr

    warnings = [line for line in swapped.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        "Warning: --labels [O, I-PER, B-PER] differs from the labels hyper-parameter 'labels' records "
        "[O, B-PER, I-PER]: --labels wins; if its order or names are wrong, the model is mislabelled"
    ]
    report = json.loads((tmp_path / "swapped" / "conversion-report.json").read_text())
    assert report["conversion"]["labels_overridden"] == {
        "recorded": FABRIC_LABELS,
        "recorded_from": "hyper-parameter 'labels'",
    }
    assert report["conversion"]["id2label"] == {"0": "O", "1": "I-PER", "2": "B-PER"}
    assert report["conversion"]["labels_from"] == "--labels"
    assert "Warning" not in same.stderr
    assert (
        json.loads((tmp_path / "same" / "conversion-report.json").read_text())["conversion"]["labels_overridden"]
        is None
    )


def test_the_labels_warning_shows_at_most_eight_names_of_each_list(cli, trained_checkpoint, base_model, tmp_path):
    recorded = [f"tag{i}" for i in range(10)]
    checkpoint = trained_checkpoint("token-classification", num_labels=10, labels=recorded)
    given = ",".join(f"T{i}" for i in range(10))

    result = cli("convert", "--checkpoint", checkpoint, "--base-model", base_model, "--output", tmp_path / "m",
                 "--labels", given, "--no-check")  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Warning:")] == [
        "Warning: --labels [T0, T1, T2, T3, T4, T5, T6, T7 and 2 more] differs from the labels hyper-parameter "
        "'labels' records [tag0, tag1, tag2, tag3, tag4, tag5, tag6, tag7 and 2 more]: --labels wins; if its order "
        "or names are wrong, the model is mislabelled"
    ]
    report = json.loads((tmp_path / "m" / "conversion-report.json").read_text())
    assert report["conversion"]["labels_overridden"]["recorded"] == recorded, "the report keeps the whole list"


def test_untrusted_tensor_subclass_is_refused(cli, base_model, checkpoints, tmp_path):
    ckpt = torch.load(checkpoints["plain"], weights_only=False, map_location="cpu")
    key = "model.qa_outputs.bias"
    ckpt["state_dict"][key] = _Odd(ckpt["state_dict"][key])
    path = tmp_path / "odd.ckpt"
    torch.save(ckpt, path)
    result = cli("convert", "--checkpoint", path, "--output", tmp_path / "m", "--base-model", base_model)
    assert result.exit_code == 1
    assert "are not tensors" in one_error_line(result) and "--trust-checkpoint" in result.stderr


class _Odd:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


# --- the other commands ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["convert"], ["verify"], ["inspect"], ["push"], ["demo"]])
def test_help_is_fast_and_does_not_import_torch(command):
    code = (
        "import sys\n"
        "from longformer_action.cli import main\n"
        f"try:\n    main({[*command, '--help']!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "longformer_action", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "longformer-convert" in result.stdout


def _written_by(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("written by:"))


def test_inspect_says_what_wrote_the_checkpoint_and_what_its_other_bytes_are(cli, checkpoints, fabric_checkpoint,
                                                                              trainer_output, tmp_path):  # fmt: skip
    from safetensors.torch import save_file

    lightning = cli("inspect", "--checkpoint", checkpoints["plain"]).stdout
    assert _written_by(lightning).startswith("written by:    Lightning 2.") and "optimizer state" in lightning
    fabric = cli("inspect", "--checkpoint", fabric_checkpoint).stdout
    assert _written_by(fabric) == "written by:    Lightning Fabric (fabric.save); epoch n/a, step 3"
    trainer = cli("inspect", "--checkpoint", trainer_output / "checkpoint-2").stdout
    assert _written_by(trainer).startswith("written by:    transformers (save_pretrained, or a Trainer's checkpoint-N)")
    assert "in the folder's other files" in trainer
    state = torch.load(checkpoints["plain"], map_location="cpu", weights_only=False)["state_dict"]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "weights.safetensors")
    bare = cli("inspect", "--checkpoint", tmp_path / "weights.safetensors").stdout
    assert _written_by(bare) == "written by:    a bare state dict (no training metadata); epoch n/a, step n/a"
    assert "of safetensors header" in bare and "optimizer" not in bare
    assert all("None" not in _written_by(out) for out in (lightning, fabric, trainer, bare))


def test_inspect_text_and_json(cli, checkpoints):
    result = cli("inspect", "--checkpoint", checkpoints["origin-pytorch_lightning"])
    assert result.exit_code == 0, result.stderr
    assert "sibling: encoder at `model.`, head `qa_outputs` Linear(h, 2)" in result.stdout
    assert "task:          question-answering (LongformerForQuestionAnswering)" in result.stdout
    assert "pathlib.PosixPath" in result.stdout and "optimizer state" in result.stdout
    data = json.loads(cli("inspect", "--checkpoint", checkpoints["origin-pytorch_lightning"], "--json").stdout)
    assert data["layout"]["dropped"] == {
        "model.pooler.dense.bias": "LongformerForQuestionAnswering has no pooler",
        "model.pooler.dense.weight": "LongformerForQuestionAnswering has no pooler",
    }
    assert data["shape"] == {"vocab_size": data["shape"]["vocab_size"], "hidden_size": 32, "num_hidden_layers": 2}
    assert data["global_step"] == 3 and data["task"] == "question-answering"
    assert data["weight_bytes"] * 2.5 < data["file_bytes"] == checkpoints["origin-pytorch_lightning"].stat().st_size
    assert set(data["hyper_parameters"]) >= {"lr", "data_dir"}


def test_inspect_reports_an_unconvertible_layout(cli, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    result = cli("inspect", "--checkpoint", path)
    assert result.exit_code == 0
    assert "not decided: no Longformer encoder" in result.stdout


def test_check_failure_exit_status_is_distinct():
    assert EXIT_CHECK_FAILED not in (0, 1, 2)


# --- Lightning Fabric ------------------------------------------------------------------------------


def test_a_fabric_checkpoint_converts_exactly(cli, fabric_checkpoint, base_model, tmp_path):
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", fabric_checkpoint, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    source = torch.load(fabric_checkpoint, map_location="cpu", weights_only=True)["model"]
    saved = saved_tensors(out)
    assert set(saved) == set(source) and all(torch.equal(saved[k], source[k]) for k in source)
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["source"]["generation"] == "fabric" and report["source"]["global_step"] == 3
    assert report["task"] == "token-classification" and report["check"]["passed"]
    conversion = report["conversion"]
    assert conversion["id2label"] == {"0": "O", "1": "B-PER", "2": "I-PER"}
    assert conversion["labels_from"] == "hyper-parameter 'labels'"
    assert "fabric" in (out / "README.md").read_text()


def test_a_single_window_read_as_one_sided_is_a_log_line_and_a_card_row(cli, checkpoints, base_model, tmp_path):
    # the layouts' modules record args.attention_window 4 against the base config's 8 (allenai's one-sided form)
    out = tmp_path / "model"
    args = ["--output", out, "--base-model", base_model, "--no-check"]
    result = cli("convert", "--checkpoint", checkpoints["wrapped-lightning"], *args)
    assert result.exit_code == 0, result.stderr
    assert "Warning:" not in result.stderr, "allenai's usual form: said in the log and the card, not a warning"
    said = [line for line in result.stderr.splitlines() if "half the config's attention_window" in line]
    assert said == [
        "map: hyper-parameter 'args.attention_window' is 4, half the config's attention_window [8, 8]: read as "
        "the one-sided window, as allenai's scripts record it; if the model trained with attention_window 4, pass "
        "--base-model with that config"
    ]
    assert json.loads((out / "conversion-report.json").read_text())["conversion"]["one_sided_window"] == {
        "where": "hyper-parameter 'args.attention_window'",
        "recorded": 4,
        "config": [8, 8],
    }
    assert (
        "| attention window | `[8, 8]` in `config.json`; hyper-parameter 'args.attention_window' is 4, read as the "
        "one-sided window" in (out / "README.md").read_text()
    )
    plain = cli("convert", "--checkpoint", checkpoints["plain"], "--output", tmp_path / "plain", *args[2:])
    assert plain.exit_code == 0 and "half the config's attention_window" not in plain.stderr
    assert "| attention window |" not in (tmp_path / "plain" / "README.md").read_text()


def test_a_fabric_checkpoints_recorded_config_is_compared(cli, fabric_checkpoint, tmp_path):
    wider = demo.make_base_model(tmp_path / "wider", tokenizer=False, attention_window=16)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", fabric_checkpoint, "--output", out, "--base-model", wider)
    line = one_error_line(result)
    assert "attention_window is 8 in hyper-parameter 'config' but 16 in the base config" in line
    assert "--base-model hparams" in line and not out.exists()
    result = cli("convert", "--checkpoint", fabric_checkpoint, "--output", out, "--base-model", "hparams")
    assert result.exit_code == 0, result.stderr
