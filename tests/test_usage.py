"""The model card's usage snippet, executed as a user pastes it, reads the outputs as the model was trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from longformer_action import demo
from longformer_action.publishing.usage import NO_TOKENIZER

#: The text the snippet tokenizes for a text task.
TEXT = "a long document ..."


def snippet(folder: Path) -> str:
    card = (folder / "README.md").read_text()
    return card.split("```python\n", 1)[1].split("```", 1)[0]


def run_snippet(folder: Path, *, tokenizer: Path | None = None) -> dict[str, Any]:
    code = snippet(folder).replace("path/to/this/folder", str(folder))
    if tokenizer is not None:
        code = code.replace(NO_TOKENIZER, str(tokenizer))
    scope: dict[str, Any] = {}
    exec(compile(code, "model card", "exec"), scope)  # noqa: S102 - the card's own snippet, as a user pastes it
    return scope


def convert(cli, checkpoint: Path, out: Path, *args: Any) -> None:
    result = cli("convert", "--checkpoint", checkpoint, "--output", out, *args)
    assert result.exit_code == 0, result.stderr


def test_a_kept_crf_is_decoded_by_viterbi_over_its_transitions(cli, crf_checkpoint, base_model, tmp_path):
    out = tmp_path / "model"
    convert(cli, crf_checkpoint, out, "--base-model", base_model, "--keep", "crf.")
    scope = run_snippet(out)
    # the reference: the trained module's own CRF decoding (demo.make_crf), with the checkpoint's tensors
    state = torch.load(crf_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    crf = demo.make_crf(3)
    crf.load_state_dict({k.removeprefix("crf."): v for k, v in state.items() if k.startswith("crf.")})
    with torch.no_grad():
        emissions = scope["model"](**scope["tokenizer"](TEXT, return_tensors="pt")).logits
        best = crf.decode(emissions)[0].tolist()
    assert scope["tags"] == [scope["model"].config.id2label[i] for i in best]
    assert "argmax(-1)" not in snippet(out), "argmax over each token ignores the CRF"


def test_a_multi_label_classifier_is_read_by_a_sigmoid_over_each_label(cli, lightning_cli_checkpoint, base_model,
                                                                         tmp_path):  # fmt: skip
    out = tmp_path / "model"
    convert(cli, lightning_cli_checkpoint, out, "--base-model", base_model)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    scope = run_snippet(out)
    # transformers' pipeline applies the sigmoid to a multi_label_classification model (function_to_apply)
    scores = scope["run"]([TEXT])[0]  # a list in, one list of every label's score per text out
    assert len(scores) == scope["model"].config.num_labels, "top_k=None: every label's score"
    assert scope["labels"] == [s["label"] for s in sorted(scores, key=lambda s: s["label"]) if s["score"] > 0.5]
    assert "argmax" not in snippet(out)


def test_a_regression_model_is_read_as_its_value(cli, trained_checkpoint, base_model, tmp_path):
    out = tmp_path / "model"
    convert(cli, trained_checkpoint("text-classification", num_labels=1), out, "--base-model", base_model)
    scope = run_snippet(out)
    with torch.no_grad():
        logits = scope["model"](**scope["tokenizer"](TEXT, return_tensors="pt")).logits
    assert scope["value"] == pytest.approx(float(logits[0, 0]))
    assert scope["run"](TEXT)[0]["score"] == pytest.approx(float(logits[0, 0]), abs=1e-6), "no sigmoid"
    assert "label =" not in snippet(out)


def test_without_a_tokenizer_the_snippet_says_one_must_be_supplied(cli, fabric_checkpoint, base_model, tmp_path):
    out = tmp_path / "model"
    convert(cli, fabric_checkpoint, out, "--base-model", "hparams")
    code = snippet(out)
    assert 'AutoTokenizer.from_pretrained("path/to/this/folder")' not in code
    assert (
        "# this folder has no tokenizer, as its config came from the checkpoint's hyper-parameters (--base-model "
        "hparams): load the one the model was trained with" in code
    )
    card = (out / "README.md").read_text()
    assert "| base model (config, tokenizer) | none: the config came from the checkpoint's hyper-parameters" in card
    assert "| tokenizer | none: `--base-model hparams` gives the config alone; use the tokenizer the model" in card
    assert "| tokenizer | none | not run | no tokenizer: --base-model hparams gives the config alone |" in card
    assert "a local folder" not in card
    scope = run_snippet(out, tokenizer=base_model)
    assert len(scope["tags"]) == scope["inputs"]["input_ids"].shape[1]
    assert scope["run"](TEXT) is not None


def test_without_a_pipeline_for_the_trained_global_attention_a_comment_says_why(cli, trained_checkpoint, base_model,
                                                                                 tmp_path):  # fmt: skip
    out = tmp_path / "model"
    convert(
        cli, trained_checkpoint("text-classification"), out, "--base-model", base_model, "--global-attention", "none"
    )
    code = snippet(out)
    assert "pipeline(" not in code.replace('# no pipeline("text-classification")', "")
    assert (
        '# no pipeline("text-classification"): a pipeline passes no global_attention_mask, so the class default '
        "`first-token` would replace the trained `none`; call the model as above" in code
    )
    assert run_snippet(out)["label"] in {"LABEL_0", "LABEL_1", "LABEL_2"}
