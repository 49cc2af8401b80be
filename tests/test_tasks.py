"""Every task of the registry, end to end: real Trainer checkpoints in the wrapped and the sibling layout.

For each task and layout a tiny LightningModule is trained by a real ``pytorch_lightning.Trainer``
and converted once (module-scoped). The folder is then loaded with the task's ``AutoModelFor...``
class and its outputs compared with the trained module's own ``forward`` (the reference written
here, with the global attention the module trained with), every tensor compared with its source.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from torch import nn

from longformer_action import demo
from longformer_action.cli import main
from longformer_action.registry import tasks
from longformer_action.registry.attention import global_attention_mask

from .helpers import one_error_line, trained_module

#: (task, layout) pairs whose head ``--task auto`` reads on its own, and those it must ask about.
AUTO = {
    ("question-answering", "wrapped"),
    ("question-answering", "origin"),
    ("question-answering", "split"),
    ("text-classification", "wrapped"),
    ("text-classification", "sibling"),
    ("token-classification", "wrapped"),
    ("multiple-choice", "wrapped"),
    ("fill-mask", "wrapped"),
    ("fill-mask", "sibling"),
    ("feature-extraction", "wrapped"),
    ("feature-extraction", "sibling"),
}
ASKS = {("token-classification", "sibling"), ("multiple-choice", "sibling")}
PAIRS = sorted(AUTO | ASKS)


#: Every test here trains or converts: end to end; one xdist worker runs them all (their fixtures convert 14 folders).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("tasks")]


def run(*args: Any):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def trained(base_model: Path, task_checkpoints, trained_checkpoint) -> dict[tuple[str, str], tuple[Path, Any]]:
    """(task, layout) -> (checkpoint, the trained module), each trained once per run with a real Trainer (the
    session's ``trained_checkpoint``)."""
    made = {}
    for task, layout in PAIRS:
        if layout == "wrapped":
            made[(task, layout)] = task_checkpoints[task]
            continue
        path = trained_checkpoint(task, layout, labels=None)
        made[(task, layout)] = (path, trained_module(base_model, path, task=task, layout=layout, labels=None))
    return made


@pytest.fixture(scope="module")
def converted(trained, base_model, tmp_path_factory) -> dict[tuple[str, str], tuple[Path, Any]]:
    """(task, layout) -> (folder, the CLI's result): ``auto`` where it decides, ``--task`` where it asks."""
    folder = tmp_path_factory.mktemp("converted")
    done = {}
    for (task, layout), (ckpt, _) in trained.items():
        out = folder / f"{task}-{layout}"
        extra = ["--task", task] if (task, layout) in ASKS else []
        done[(task, layout)] = (
            out,
            run("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, *extra),
        )
    return done


def sample_inputs(task: tasks.Task, config: Any) -> dict[str, torch.Tensor]:
    """A padded batch of two, longer than the window, with three separators per row (seeded)."""
    generator = torch.Generator().manual_seed(7)
    shape = (2, 3, 40) if task.inputs == "choices" else (2, 40)
    ids = torch.randint(5, config.vocab_size, shape, generator=generator)
    ids[..., 0], ids[..., 6], ids[..., 7] = config.bos_token_id, config.sep_token_id, config.sep_token_id
    ids[..., -1] = config.sep_token_id
    mask = torch.ones_like(ids)
    ids[1, ..., 30:], mask[1, ..., 30:] = config.pad_token_id, 0
    ids[1, ..., 29] = config.sep_token_id
    return {"input_ids": ids, "attention_mask": mask}


def saved(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def compare_with_module(folder: Path, module: Any, task: tasks.Task, atol: float = 1e-5) -> float:
    """Largest difference between the folder (loaded as a downstream job does) and the trained module."""
    model = task.loader_class().from_pretrained(folder).eval()
    inputs = sample_inputs(task, model.config)
    mask = global_attention_mask(module.convention, inputs["input_ids"], model.config.sep_token_id)
    explicit = {} if module.convention == task.global_attention else {"global_attention_mask": mask}
    with torch.inference_mode():
        want = module(inputs["input_ids"], inputs["attention_mask"], mask)
        got = model(**inputs, **explicit)
    worst = 0.0
    for name, value in want.items():
        assert getattr(got, name).shape == value.shape, name
        worst = max(worst, (getattr(got, name) - value).abs().max().item())
    assert worst <= atol, f"{task.name}: folder differs from the module by {worst}"
    return worst


@pytest.mark.parametrize(("task", "layout"), PAIRS, ids=[f"{t}-{layout}" for t, layout in PAIRS])
def test_every_task_and_layout_converts_exactly(trained, converted, task, layout):
    ckpt, module = trained[(task, layout)]
    out, result = converted[(task, layout)]
    assert result.exit_code == 0, result.stderr
    entry = tasks.get(task)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [entry.architecture]
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["task"] == task and report["check"]["passed"] and report["check"]["max_abs_diff"] == 0.0
    assert report["conversion"]["global_attention"]["convention"] == entry.global_attention

    # every tensor in the folder equals its source; every source key is accounted for
    source = torch.load(ckpt, weights_only=False, map_location="cpu")["state_dict"]
    tensors = saved(out)
    fates = {k["source"]: k for k in report["mapping"]["keys"]}
    assert set(fates) == set(source)
    for key, fate in fates.items():
        if fate["fate"] == "mapped" and fate["target"] not in report["mapping"]["combined"]:
            assert torch.equal(tensors[fate["target"]], source[key]), key
    for target, parts in report["mapping"]["combined"].items():
        assert torch.equal(tensors[target], torch.cat([source[p] for p in parts])), target

    compare_with_module(out, module, entry)
    other = "first-token" if entry.global_attention == "none" else "none"
    assert f"(assumed, the task's default: pass --global-attention with what the module passed, e.g. {other})" in (
        result.stderr
    ), "the example is another convention than the assumed one"
    card = (out / "README.md").read_text()
    assert "the task's default, assumed" in card
    assert (
        f"pipeline_tag: {entry.pipeline_tag}" in card
        and entry.auto_class in card
        and "library_name: transformers" in card
    )


@pytest.mark.parametrize(("task", "layout"), sorted(ASKS), ids=[f"{t}-{layout}" for t, layout in sorted(ASKS)])
def test_auto_asks_where_the_keys_allow_two_readings(trained, base_model, tmp_path, task, layout):
    ckpt, _ = trained[(task, layout)]
    result = run("convert", "--checkpoint", ckpt, "--output", tmp_path / "m", "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "more than one reading" in line and f"--task {task}" in line and "--task feature-extraction" in line
    assert not (tmp_path / "m").exists()


def test_split_start_and_end_heads_are_one_qa_outputs(trained, converted):
    out, _ = converted[("question-answering", "split")]
    ckpt, _ = trained[("question-answering", "split")]
    source = torch.load(ckpt, weights_only=False, map_location="cpu")["state_dict"]
    weight = saved(out)["qa_outputs.weight"]
    assert torch.equal(weight[0], source["start_head.weight"][0]) and torch.equal(
        weight[1], source["end_head.weight"][0]
    )


def test_fill_mask_keeps_its_decoder_tied(converted):
    for layout in ("wrapped", "sibling"):
        out, _ = converted[("fill-mask", layout)]
        tensors = saved(out)
        assert "lm_head.decoder.weight" not in tensors, "one tensor in the file"
        report = json.loads((out / "conversion-report.json").read_text())
        assert report["conversion"]["tied"] is True
        model = tasks.get("fill-mask").loader_class().from_pretrained(out)
        assert torch.equal(model.lm_head.decoder.weight, model.longformer.embeddings.word_embeddings.weight)
        assert torch.equal(model.lm_head.decoder.weight, tensors["longformer.embeddings.word_embeddings.weight"])


def test_a_decoder_that_differs_from_the_embeddings_is_not_silently_tied(base_model, tmp_path):
    module = demo.make_module(base_model, task="fill-mask", layout="sibling")
    module.lm_head.decoder.weight = nn.Parameter(module.lm_head.decoder.weight.detach() + 0.01)
    ckpt = demo.fit_and_save(module, demo.batches(base_model, 2, task="fill-mask"), tmp_path / "untied.ckpt")
    out = tmp_path / "model"
    result = run("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    tensors = saved(out)
    assert not torch.equal(tensors["lm_head.decoder.weight"], tensors["longformer.embeddings.word_embeddings.weight"])
    report = json.loads((out / "conversion-report.json").read_text())
    assert "lm_head.decoder.weight" in report["conversion"]["untied"]
    assert "saved untied" in (out / "README.md").read_text()
    compare_with_module(out, module.eval(), tasks.get("fill-mask"))


def _first_token_classifier(base_model: Path, outputs: int) -> Any:
    """A module that applies one Linear to <s> only: no transformers class computes that."""
    import pytorch_lightning as pl
    from transformers import LongformerConfig, LongformerModel

    config = LongformerConfig.from_pretrained(base_model)

    class FirstToken(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = LongformerModel(config, add_pooling_layer=False)
            self.classifier = nn.Linear(config.hidden_size, outputs)

        def training_step(self, batch, batch_idx):
            hidden = self.model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            return nn.functional.cross_entropy(self.classifier(hidden[:, 0]), batch["label"] % outputs)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    return FirstToken()


def _mean_pooling_mlp(base_model: Path) -> Any:
    import pytorch_lightning as pl
    from transformers import LongformerConfig, LongformerModel

    config = LongformerConfig.from_pretrained(base_model)

    class MeanPool(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.encoder = LongformerModel(config, add_pooling_layer=False)
            self.mlp = nn.Sequential(nn.Linear(config.hidden_size, 16), nn.ReLU(), nn.Linear(16, 3))

        def training_step(self, batch, batch_idx):
            hidden = self.encoder(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            return nn.functional.cross_entropy(self.mlp(hidden.mean(dim=1)), batch["label"])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    return MeanPool()


def test_a_two_output_classifier_over_the_first_token_is_never_published_as_question_answering(base_model, tmp_path):
    ckpt = demo.fit_and_save(
        _first_token_classifier(base_model, 2),
        demo.batches(base_model, 2, task="text-classification"),
        tmp_path / "c.ckpt",
    )
    out = tmp_path / "model"
    result = run("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "more than one reading" in line and "a classifier applied to <s> only (--task feature-extraction)" in line
    assert "--task question-answering" in line  # offered, never chosen
    assert not out.exists()
    result = run(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, "--task", "feature-extraction"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LongformerModel"]


def test_a_custom_head_exported_with_feature_extraction_keeps_what_it_trained(base_model, tmp_path):
    # that --task auto refuses it, naming this way out, is tests/test_mapping.py's (every kind of custom head)
    ckpt = demo.fit_and_save(
        _mean_pooling_mlp(base_model), demo.batches(base_model, 2, task="text-classification"), tmp_path / "mlp.ckpt"
    )
    out = tmp_path / "model"
    result = run(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, "--task", "feature-extraction"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    fates = {k["source"]: k for k in report["mapping"]["keys"] if k["fate"] != "mapped"}
    dropped = {k for k, fate in fates.items() if fate["fate"] == "kept"}
    assert dropped == set(fates) == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    assert all("exports the encoder alone" in fate["reason"] for fate in fates.values())
    assert (report["mapping"]["dropped"], report["mapping"]["kept"]) == (0, 4)
    card = (out / "README.md").read_text()
    assert all(f"| `{k}` |" in card for k in dropped) and "Dropped keys" not in card
    assert f"| keys | {report['mapping']['mapped']} mapped, 0 dropped, 4 kept beside the model |" in card
    assert "The checkpoint has no pooler" in card
    model = tasks.get("feature-extraction").loader_class().from_pretrained(out)
    source = torch.load(ckpt, weights_only=False, map_location="cpu")["state_dict"]
    assert torch.equal(model.embeddings.word_embeddings.weight, source["encoder.embeddings.word_embeddings.weight"])
    # nothing the module trained is lost: the head's tensors are kept beside the model, checked
    from safetensors.torch import load_file

    head = load_file(out / "custom_head.safetensors")
    assert set(head) == set(dropped) and all(torch.equal(head[k], source[k]) for k in head)
    assert "custom_head.safetensors" in card and "custom_head.safetensors" in (out / "SHA256SUMS").read_text()
    assert report["check"]["tensors_compared"] == len(report["mapping"]["keys"])


def test_labels_from_the_option_and_from_hyper_parameters(base_model, tmp_path):
    plain = demo.train_checkpoint(base_model, tmp_path / "plain.ckpt", task="token-classification", steps=1)
    out = tmp_path / "given"
    result = run(
        "convert", "--checkpoint", plain, "--output", out, "--base-model", base_model, "--labels", "O,B-LOC,I-LOC"
    )
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "O", "1": "B-LOC", "2": "I-LOC"} and config["label2id"]["I-LOC"] == 2
    assert "3: O, B-LOC, I-LOC (from --labels)" in (out / "README.md").read_text()

    result = run(
        "convert", "--checkpoint", plain, "--output", tmp_path / "x", "--base-model", base_model, "--labels", "A,B"
    )
    assert result.exit_code == 1 and "--labels names 2 labels but the head has 3 outputs" in one_error_line(result)

    # a Namespace in the hyper-parameters: read by the restricted unpickler as an inert placeholder
    nested = demo.train_checkpoint(
        base_model,
        tmp_path / "nested.ckpt",
        task="text-classification",
        steps=1,
        args=argparse.Namespace(label_list=["negative", "neutral", "positive"]),
    )
    out = tmp_path / "nested"
    result = run("convert", "--checkpoint", nested, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["source"]["loader"] == "restricted"
    assert report["conversion"]["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert report["conversion"]["labels_from"] == "hyper-parameter 'args.label_list'"

    wrong = demo.train_checkpoint(
        base_model, tmp_path / "w.ckpt", task="text-classification", steps=1, classes=["a", "b"]
    )
    result = run("convert", "--checkpoint", wrong, "--output", tmp_path / "w", "--base-model", base_model)
    assert result.exit_code == 1
    assert "hyper-parameter 'classes' names 2 labels but the head has 3 outputs" in one_error_line(result)


def test_problem_type_and_its_task(trained, base_model, tmp_path):
    ckpt, _ = trained[("text-classification", "wrapped")]
    out = tmp_path / "m"
    args = ("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model)
    result = run(*args, "--problem-type", "multi_label_classification")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    ckpt, _ = trained[("token-classification", "wrapped")]
    result = run(
        "convert",
        "--checkpoint",
        ckpt,
        "--output",
        tmp_path / "n",
        "--base-model",
        base_model,
        "--problem-type",
        "regression",
    )
    assert result.exit_code == 1 and "--problem-type applies to text-classification" in one_error_line(result)


def test_a_module_trained_without_global_attention(base_model, tmp_path):
    module = demo.make_module(base_model, task="question-answering", global_attention="none")
    ckpt = demo.fit_and_save(module, demo.batches(base_model, 2), tmp_path / "none.ckpt")
    out = tmp_path / "model"
    result = run(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, "--global-attention", "none"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    attention = report["conversion"]["global_attention"]
    assert (attention["convention"], attention["class_default"]) == ("none", "question")
    assert "(assumed" not in result.stderr and "as declared with --global-attention" in (out / "README.md").read_text()
    assert report["check"]["inputs"]["global_attention_passed"] is True
    card = (out / "README.md").read_text()
    assert "global_attention_mask = torch.zeros_like(inputs['input_ids'])" in card
    qa = tasks.get("question-answering")
    compare_with_module(out, module.eval(), qa)  # called with the mask the card shows: equal
    # called with the class's default instead, the folder computes something else: the option matters
    model = qa.loader_class().from_pretrained(out).eval()
    inputs = sample_inputs(qa, model.config)
    with torch.inference_mode():
        default = model(**inputs).start_logits
        trained_way = module(inputs["input_ids"], inputs["attention_mask"], torch.zeros_like(inputs["input_ids"]))
    assert (default - trained_way["start_logits"]).abs().max() > 1e-4


def test_verify_reads_the_task_and_the_convention_from_the_folder(trained, converted, base_model, tmp_path):
    ckpt, _ = trained[("token-classification", "sibling")]
    out, _ = converted[("token-classification", "sibling")]
    result = run("verify", "--model", out, "--checkpoint", ckpt, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["task"] == "token-classification" and report["check"]["passed"]


def test_inspect_names_the_task_and_the_readings(trained):
    ckpt, _ = trained[("text-classification", "wrapped")]
    result = run("inspect", "--checkpoint", ckpt)
    assert result.exit_code == 0, result.stderr
    assert "task:          text-classification (LongformerForSequenceClassification, 3 labels)" in result.stdout
    assert "model.classifier.out_proj.weight [3, 32]" in result.stdout
    ckpt, _ = trained[("multiple-choice", "sibling")]
    data = json.loads(run("inspect", "--checkpoint", ckpt, "--json").stdout)
    assert data["task"] is None and "more than one reading" in data["layout_error"]
    assert {r["task"] for r in data["head"]["readings"]} == {
        "multiple-choice",
        "token-classification",
        "text-classification",
    }
    assert data["head"]["head_keys"] == {"scorer.bias": [1], "scorer.weight": [1, 32]}


def test_a_linear_over_the_pooler_output_is_exactly_a_sequence_classifier(base_model, tmp_path):
    """``fc(encoder(...).pooler_output)``: the pooler is tanh(dense(h[:, 0])), the class's head
    out_proj(tanh(dense(h[:, 0]))): the same arithmetic."""
    import pytorch_lightning as pl
    from transformers import LongformerConfig, LongformerModel

    config = LongformerConfig.from_pretrained(base_model)

    class PooledClassifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.encoder = LongformerModel(config)
            self.fc = nn.Linear(config.hidden_size, 4)
            self.convention = "first-token"

        def forward(self, input_ids, attention_mask, global_attention_mask):
            out = self.encoder(input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask)
            return {"logits": self.fc(out.pooler_output)}

        def training_step(self, batch, batch_idx):
            mask = global_attention_mask("first-token", batch["input_ids"], config.sep_token_id)
            logits = self(batch["input_ids"], batch["attention_mask"], mask)["logits"]
            return nn.functional.cross_entropy(logits, batch["label"])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    module = PooledClassifier()
    ckpt = demo.fit_and_save(module, demo.batches(base_model, 2, task="text-classification"), tmp_path / "p.ckpt")
    out = tmp_path / "model"
    result = run("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "on the pooler's output (the pooler becomes `classifier.dense`) (--task text-classification)" in line
    result = run(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model, "--task", "text-classification"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    fates = {k["source"]: k.get("target") for k in report["mapping"]["keys"]}
    assert (
        fates["encoder.pooler.dense.weight"] == "classifier.dense.weight"
        and fates["fc.weight"] == "classifier.out_proj.weight"
    )
    assert report["conversion"]["num_labels"] == 4
    compare_with_module(out, module.eval(), tasks.get("text-classification"))


def test_verify_names_a_checkpoint_the_folder_was_not_converted_from(trained, converted, tmp_path):
    folder, _ = converted[("text-classification", "wrapped")]
    other_task, _ = trained[("token-classification", "wrapped")]
    result = run("verify", "--model", folder, "--checkpoint", other_task)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "is not the checkpoint" in line and "the folder is text-classification" in line
    assert "Pass the checkpoint this folder was converted from" in line and "--task" not in line
    same_task, _ = trained[("text-classification", "sibling")]
    result = run("verify", "--model", folder, "--checkpoint", same_task)
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "is not the checkpoint" in line and "Pass the checkpoint the folder was converted from" in line
    assert "--atol" not in line, "a float32 folder: rounding is not the cause"


@pytest.mark.parametrize(
    ("task", "layout"),
    [
        ("question-answering", "wrapped"),
        ("text-classification", "sibling"),
        ("token-classification", "wrapped"),
        ("multiple-choice", "wrapped"),
        ("fill-mask", "wrapped"),
        ("feature-extraction", "sibling"),
    ],
)
def test_the_model_cards_snippet_runs(converted, task, layout):
    out, _ = converted[(task, layout)]
    card = (out / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", str(out))
    scope: dict[str, Any] = {}
    exec(compile(code, "model card", "exec"), scope)  # noqa: S102 - the card's own snippet, as a user pastes it
    assert scope["outputs"] is not None
    read = {
        "question-answering": "start",
        "text-classification": "label",
        "token-classification": "tags",
        "multiple-choice": "choice",
        "fill-mask": "word",
        "feature-extraction": "features",
    }[task]
    assert scope[read] is not None


def test_a_loss_weight_beside_an_ambiguous_head_is_named_with_drop_and_task(base_model, tmp_path):
    module = demo.make_module(base_model, task="token-classification", layout="sibling")
    module.loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 4.0]))
    ckpt = demo.fit_and_save(module, demo.batches(base_model, 2, task="token-classification"), tmp_path / "l.ckpt")
    out = tmp_path / "model"
    result = run("convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "'loss_fn.weight' [3] are neither the encoder nor the head" in line and "Pass --drop loss_fn." in line
    assert "--task token-classification" in line and "--global-attention" in line
    result = run(
        "convert", "--checkpoint", ckpt, "--output", out, "--base-model", base_model,
        "--drop", "loss_fn.", "--task", "token-classification",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
