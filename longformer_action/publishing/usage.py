"""The model card's usage snippet: load the folder, call it as the module was trained, read the outputs."""

from __future__ import annotations

from typing import Any

from ..reading.base_model import HPARAMS_BASE
from ..registry.tasks import Task
from ..registry.tasks import get as get_task

#: How the snippet tokenizes, by the task's input kind (``Task.inputs``).
_TOKENIZE = {
    "pair": ['inputs = tokenizer("a question?", "a long context ...", return_tensors="pt")'],
    "text": ['inputs = tokenizer("a long document ...", return_tensors="pt")'],
    "masked": ['inputs = tokenizer(f"a long document with a {tokenizer.mask_token} ...", return_tensors="pt")'],
    "choices": [
        'inputs = tokenizer(["a question?"] * 2, ["choice A", "choice B"], return_tensors="pt", padding=True)',
        "inputs = {name: value.unsqueeze(0) for name, value in inputs.items()}  # (batch, choices, seq)",
    ],
    "seq2seq": ['inputs = tokenizer("a long document ...", return_tensors="pt")'],
}

#: The dtypes transformers 4.x does not keep unless asked: it loads float32 by default.
_HALF = ("float16", "bfloat16")

#: Where the snippet loads a tokenizer from when the folder has none.
NO_TOKENIZER = "the/tokenizer/the/model/was/trained/with"

#: How a text classifier's logits are read, by problem type, as transformers' text-classification
#: pipeline reads them (``function_to_apply``: sigmoid for multi-label, none for regression), and the
#: pipeline's arguments that return the same.
_BY_PROBLEM = {
    "multi_label_classification": (
        "labels = [model.config.id2label[i] for i, p in enumerate(outputs.logits[0].sigmoid().tolist()) if p > 0.5]"
        "  # multi-label: every label whose sigmoid > 0.5",
        ", top_k=None)  # every label's sigmoid score: keep those > 0.5",
    ),
    "regression": (
        "values = outputs.logits[0].tolist()  # regression: the predicted values, one per output, not labels",
        ', function_to_apply="none")  # the predicted value, not a probability',
    ),
    "regression-1": (
        "value = outputs.logits[0, 0].item()  # regression: the predicted value, not a label",
        ', function_to_apply="none")  # the predicted value, not a probability',
    ),
}


def problem_reading(task: Task, conv: dict[str, Any]) -> str | None:
    """The key of ``_BY_PROBLEM`` for a text classifier that is not single-label, else ``None``.

    ``problem_type`` as the config holds it; without one, transformers' classes treat one label as
    regression (``LongformerForSequenceClassification``'s loss).
    """
    if not task.problem_type:
        return None
    problem = conv.get("problem_type") or ("regression" if conv.get("num_labels") == 1 else None)
    if problem == "regression" and conv.get("num_labels") == 1:
        return "regression-1"
    return problem if problem in _BY_PROBLEM else None


def _crf_keys(conv: dict[str, Any]) -> tuple[str, str, str] | None:
    # the kept CRF's tensors under their checkpoint names (the report's prefix has wrapper prefixes stripped)
    kept = conv.get("custom_head") or {}
    crfs = kept.get("crfs") or []
    if not crfs:
        return None
    prefix, names = crfs[0]["prefix"], [t["key"] for t in kept["tensors"]]

    def key(name: str) -> str:
        end = prefix + name
        return next(k for k in names if k == end or k.endswith("." + end))

    return key("transitions"), key("start_transitions"), key("end_transitions")


def _viterbi(conv: dict[str, Any]) -> list[str]:
    keys = _crf_keys(conv)
    assert keys is not None
    transitions, start, end = keys
    file = conv["custom_head"]["file"]
    return [
        "",
        f"# trained with a CRF, kept in {file}: outputs.logits are its emission scores, decoded by Viterbi",
        "# (the tag sequence with the best total score), not by argmax over each token",
        "from safetensors.torch import load_file",
        "",
        f'crf = load_file("path/to/this/folder/{file}")',
        f'transitions, start, end = crf["{transitions}"], crf["{start}"], crf["{end}"]',
        "emissions = outputs.logits[0].float()  # (seq, tags)",
        "score, history = start + emissions[0], []",
        "for emission in emissions[1:]:",
        "    score, best = (score[:, None] + transitions).max(0)  # transitions[i, j]: tag j after tag i",
        "    score, history = score + emission, history + [best]",
        "path = [int((score + end).argmax())]",
        "for best in reversed(history):",
        "    path.append(int(best[path[-1]]))",
        "tags = [model.config.id2label[i] for i in reversed(path)]",
    ]


def usage(conv: dict[str, Any], dtype: str | None = None, base_spec: str = "") -> list[str]:
    """The snippet's lines: how a downstream job loads the folder, calls it as the module was trained,
    and reads the outputs (a fenced ``python`` block).

    The lines run in every transformers version the README names (4.46 to 5.x); for a float16 or
    bfloat16 folder a comment says what 4.x needs to keep the dtype. A text classifier's outputs are
    read as its problem type says (sigmoid > 0.5 for multi-label, the value for regression), a token
    classifier with a kept CRF is decoded by Viterbi over the kept transitions, a folder without a
    tokenizer says that one must be supplied, and where no pipeline reproduces the trained call a
    comment says why.

    Args:
        conv: the report's ``conversion`` section.
        dtype: the saved dtype.
        base_spec: ``--base-model`` as given (``hparams``: the config came from the checkpoint).
    """
    task = get_task(conv["task"], conv.get("family"))
    attention = conv["global_attention"]
    tokenizer = bool(conv.get("tokenizer"))
    source = '"path/to/this/folder"' if tokenizer else f'"{NO_TOKENIZER}"'
    lines = ["```python"]
    if attention["call"]:
        lines.append("import torch")
    lines += [f"from transformers import {conv['auto_class']}, AutoTokenizer", ""]
    if dtype in _HALF:
        lines.append(
            f"# saved in {dtype}: transformers 5 loads it so; transformers 4.x loads float32 unless you pass "
            'torch_dtype="auto"'
        )
    lines.append(f'model = {conv["auto_class"]}.from_pretrained("path/to/this/folder")')
    if not tokenizer:
        why = (
            "its config came from the checkpoint's hyper-parameters (--base-model hparams)"
            if base_spec == HPARAMS_BASE
            else "the base model had no tokenizer files"
        )
        lines.append(f"# this folder has no tokenizer, as {why}: load the one the model was trained with")
    lines += [f"tokenizer = AutoTokenizer.from_pretrained({source})", *_TOKENIZE[task.inputs]]
    if attention["call"]:
        lines += [
            f"# trained with global attention `{attention['convention']}`, not the class default "
            f"`{attention['class_default']}`: pass it explicitly",
            attention["call"],
            f"outputs = {_call(task)}(**inputs, global_attention_mask=global_attention_mask)",
        ]
    else:
        lines.append(f"outputs = {_call(task)}(**inputs)")
    problem = problem_reading(task, conv)
    crf = _crf_keys(conv) is not None
    if crf and task.name == "token-classification":
        lines += _viterbi(conv)
    else:
        for each in (conv.get("custom_head") or {}).get("crfs") or []:
            lines.append(
                f"# trained with a CRF ({each['prefix']}* in {conv['custom_head']['file']}): decode the tagger's "
                "logits by Viterbi over its transitions (see below), not by argmax"
            )
        lines.append(_BY_PROBLEM[problem][0] if problem else task.read_outputs)
    lines += _pipeline(task, conv, problem, crf, source if not tokenizer else None)
    lines.append("```")
    return lines


def _pipeline(task: Task, conv: dict[str, Any], problem: str | None, crf: bool, tokenizer: str | None) -> list[str]:
    if not task.pipeline:
        return []
    attention = conv["global_attention"]
    if attention["call"]:
        return [
            "",
            f'# no pipeline("{task.pipeline}"): a pipeline passes no global_attention_mask, so the class default '
            f"`{attention['class_default']}` would replace the trained `{attention['convention']}`; call the model "
            "as above",
        ]
    call = f'run = pipeline("{task.pipeline}", model="path/to/this/folder"'
    if tokenizer:
        call += f", tokenizer={tokenizer}"
    call += _BY_PROBLEM[problem][1] if problem else ")"
    if crf and task.name == "token-classification":
        call += "  # argmax per token: it ignores the CRF (decode as above)"
    return ["", "from transformers import pipeline", call]


def _call(task: Task) -> str:
    # only a class with a language-model head generates (LEDModel, the encoder and decoder alone, does not)
    return "model.generate" if task.model_class().can_generate() else "model"
