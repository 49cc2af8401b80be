"""One registry of tasks: what differs between Longformer's heads, as data.

Each ``Task`` says which transformers class computes it, how its head looks in a state dict (and how
to recognise it under other names), the head's arithmetic for the check's reference (written with
``torch.nn.functional``, independent of the class), the check's inputs, the pipeline tag, and the
global attention the class applies when the caller passes none. Mapping, conversion, the check, the
report and the command line look a task up here; none of them branches on a task's name.

Task names follow optimum's ``TasksManager`` and transformers' pipelines. The shape of the registry
follows transformers' auto mappings: one entry per task, looked up by name or by architecture.

Standard library only at import time; torch is imported by the functions that compute.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .choices import GLOBAL_ATTENTION, TASKS

Shape = tuple[int, ...]

#: The encoder's keys in every class of the registry (``LongformerModel`` itself has none).
ENCODER_TARGET = "longformer."


# --- global attention conventions -------------------------------------------------------------------


def _first_sep(input_ids: Any, sep_token_id: int) -> Any:
    return (input_ids == sep_token_id).int().argmax(dim=-1, keepdim=True)


def _positions(input_ids: Any) -> Any:
    import torch

    return torch.arange(input_ids.shape[-1]).expand_as(input_ids)


def global_attention_mask(convention: str, input_ids: Any, sep_token_id: int) -> Any:
    """The ``global_attention_mask`` of a convention, shaped like ``input_ids`` (int64, 1 = global).

    Conventions (what a module did when it called the encoder):

    - ``none``: no token attends globally (``LongformerModel``'s, token classification's and masked
      LM's behaviour when the caller passes no mask);
    - ``first-token``: ``<s>`` only (``LongformerForSequenceClassification``'s default);
    - ``question``: every token before the first separator (``LongformerForQuestionAnswering``'s
      default, ``_compute_global_attention_mask(..., before_sep_token=True)``);
    - ``after-question``: every position after the second separator to the end, padding included
      (``LongformerForMultipleChoice``'s default, ``before_sep_token=False``).

    Args:
        convention: one of the names above.
        input_ids: int64 tensor ``(batch, seq)`` or ``(batch, choices, seq)``.
        sep_token_id: the config's ``sep_token_id``.
    """
    import torch

    if convention == "none":
        return torch.zeros_like(input_ids)
    if convention == "first-token":
        mask = torch.zeros_like(input_ids)
        mask[..., 0] = 1
        return mask
    if convention == "question":
        return (_positions(input_ids) < _first_sep(input_ids, sep_token_id)).long()
    if convention == "after-question":
        return (_positions(input_ids) > _first_sep(input_ids, sep_token_id) + 1).long()
    raise ValueError(f"unknown global attention convention {convention!r}")


#: How a downstream caller reproduces each convention (for the model card).
GLOBAL_ATTENTION_CALLS = {
    "none": "global_attention_mask = torch.zeros_like(inputs['input_ids'])",
    "first-token": "global_attention_mask = torch.zeros_like(inputs['input_ids']); global_attention_mask[..., 0] = 1",
    "question": (
        "global_attention_mask = (torch.arange(inputs['input_ids'].shape[-1]) < "
        "(inputs['input_ids'] == tokenizer.sep_token_id).int().argmax(-1, keepdim=True)).long()"
    ),
    "after-question": (
        "global_attention_mask = (torch.arange(inputs['input_ids'].shape[-1]) > "
        "(inputs['input_ids'] == tokenizer.sep_token_id).int().argmax(-1, keepdim=True) + 1).long()"
    ),
}


# --- recognising a head --------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The keys of a state dict outside the encoder, as a transformers head would see them.

    Attributes:
        keys: key (relative to ``prefix``) to shape.
        prefix: what precedes the head's keys (``model.`` when a transformers class is wrapped).
        hidden_size: the encoder's hidden size.
        pooler: whether the encoder's keys include a pooler.
        class_layout: the encoder is a transformers class's ``longformer`` attribute and the head sits
            beside it, so the head's attribute names are the class's own.
    """

    keys: Mapping[str, Shape]
    prefix: str
    hidden_size: int
    pooler: bool
    class_layout: bool

    def modules(self) -> dict[str, dict[str, Shape]]:
        """Module path to its parameters (``weight``, ``bias``, ...) and their shapes."""
        found: dict[str, dict[str, Shape]] = {}
        for key, shape in self.keys.items():
            module, _, param = key.rpartition(".")
            found.setdefault(module, {})[param] = shape
        return found


@dataclass(frozen=True)
class Reading:
    """One way to read a head as a task's.

    Attributes:
        task: the task's name.
        exact: the keys can mean nothing else (the class's own names and shapes); ``False`` when
            they fit but could also be something else (a bare Linear under another name).
        mapped: head key (relative to ``Head.prefix``) to the class's key.
        combined: the class's key to head keys concatenated along dim 0 (split start and end heads).
        num_labels: the number of labels the head's shape gives, when the task has labels.
        why: what the keys look like, for messages.
    """

    task: str
    exact: bool
    mapped: Mapping[str, str] = field(default_factory=dict)
    combined: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    num_labels: int | None = None
    why: str = ""


def _linear(params: Mapping[str, Shape], hidden: int, out: int | None = None) -> int | None:
    """Output size of a Linear(hidden, n) with bias, given its parameters; ``None`` if it is not one."""
    if set(params) != {"weight", "bias"}:
        return None
    weight, bias = params["weight"], params["bias"]
    if len(weight) != 2 or weight[1] != hidden or bias != (weight[0],):
        return None
    return weight[0] if out is None or weight[0] == out else None


def _single_linear(head: Head) -> tuple[str, int] | None:
    modules = head.modules()
    if len(modules) != 1:
        return None
    ((name, params),) = modules.items()
    n = _linear(params, head.hidden_size)
    return (name, n) if n is not None else None


def _linear_keys(module: str, target: str) -> dict[str, str]:
    dot = f"{module}." if module else ""
    return {f"{dot}weight": f"{target}.weight", f"{dot}bias": f"{target}.bias"}


def _match_question_answering(head: Head) -> list[Reading]:
    modules = head.modules()
    single = _single_linear(head)
    if single and single[1] == 2 and single[0].rsplit(".", 1)[-1] == "qa_outputs":
        mapped = _linear_keys(single[0], "qa_outputs")
        return [Reading("question-answering", True, mapped, num_labels=2, why="`qa_outputs` Linear(h, 2)")]
    ones = {m: p for m, p in modules.items() if _linear(p, head.hidden_size, 1)}
    if len(ones) == 2 and len(modules) == 2:
        start = [m for m in ones if re.search(r"start", m.rsplit(".", 1)[-1], re.IGNORECASE)]
        end = [m for m in ones if re.search(r"end", m.rsplit(".", 1)[-1], re.IGNORECASE)]
        if len(start) == 1 and len(end) == 1 and start != end:
            s, e = start[0], end[0]
            return [
                Reading(
                    "question-answering",
                    True,
                    combined={
                        "qa_outputs.weight": (f"{s}.weight", f"{e}.weight"),
                        "qa_outputs.bias": (f"{s}.bias", f"{e}.bias"),
                    },
                    num_labels=2,
                    why=f"start and end heads `{s}` and `{e}`, two Linear(h, 1)",
                )
            ]
    single = _single_linear(head)
    if single and single[1] == 2:
        mapped = _linear_keys(single[0], "qa_outputs")
        return [Reading("question-answering", False, mapped, num_labels=2, why=f"`{single[0]}` Linear(h, 2)")]
    return []


def _match_text_classification(head: Head) -> list[Reading]:
    modules = head.modules()
    h = head.hidden_size
    dense = [m for m in modules if m.rsplit(".", 1)[-1] == "dense"]
    for d in dense:
        parent = d[: -len("dense")]
        out = f"{parent}out_proj"
        if set(modules) == {d, out} and _linear(modules[d], h, h) and (n := _linear(modules[out], h)):
            mapped = {**_linear_keys(d, "classifier.dense"), **_linear_keys(out, "classifier.out_proj")}
            return [
                Reading(
                    "text-classification",
                    True,
                    mapped,
                    num_labels=n,
                    why=f"`{parent}dense` + `{parent}out_proj` on <s>",
                )
            ]
    return []


def _match_token_classification(head: Head) -> list[Reading]:
    single = _single_linear(head)
    if not single:
        return []
    name, n = single
    exact = head.class_layout and name == "classifier" and not head.pooler
    return [
        Reading(
            "token-classification",
            exact,
            _linear_keys(name, "classifier"),
            num_labels=n,
            why=f"`{name}` Linear(h, {n})",
        )
    ]


def _match_multiple_choice(head: Head) -> list[Reading]:
    single = _single_linear(head)
    if not single or single[1] != 1 or not head.pooler:
        return []
    name = single[0]
    exact = head.class_layout and name == "classifier"
    return [Reading("multiple-choice", exact, _linear_keys(name, "classifier"), why=f"pooler + `{name}` Linear(h, 1)")]


def _match_fill_mask(head: Head) -> list[Reading]:
    h, keys = head.hidden_size, set(head.keys)
    for key in sorted(keys):
        if not (key == "dense.weight" or key.endswith(".dense.weight")):
            continue
        p = key[: -len("dense.weight")]
        required = {f"{p}{k}" for k in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias")}
        optional = {f"{p}decoder.weight", f"{p}decoder.bias"}
        if not required <= keys or keys - required - optional:
            continue
        vocab = head.keys[f"{p}bias"]
        shapes = {
            "dense.weight": (h, h),
            "dense.bias": (h,),
            "layer_norm.weight": (h,),
            "layer_norm.bias": (h,),
            "decoder.weight": (*vocab, h),
            "decoder.bias": vocab,
        }
        if any(head.keys[f"{p}{k}"] != shape for k, shape in shapes.items() if f"{p}{k}" in keys) or len(vocab) != 1:
            continue
        mapped = {f"{p}{k}": f"lm_head.{k}" for k in shapes if f"{p}{k}" in keys}
        mapped[f"{p}bias"] = "lm_head.bias"
        return [Reading("fill-mask", True, mapped, why=f"`{p}dense`, `{p}layer_norm`, `{p}decoder` and `{p}bias`")]
    return []


def _match_feature_extraction(head: Head) -> list[Reading]:
    # exact only for a checkpoint that is the encoder alone; otherwise the way out for a custom head
    return [Reading("feature-extraction", not head.keys, why="the encoder alone")]


# --- the head's arithmetic, for the check's reference ---------------------------------------------


def _qa_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    logits = F.linear(out["last_hidden_state"], head["qa_outputs.weight"], head["qa_outputs.bias"])
    start, end = logits.split(1, dim=-1)
    return {"start_logits": start.squeeze(-1).contiguous(), "end_logits": end.squeeze(-1).contiguous()}


def _text_classification_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    first = out["last_hidden_state"][:, 0]
    x = torch.tanh(F.linear(first, head["classifier.dense.weight"], head["classifier.dense.bias"]))
    return {"logits": F.linear(x, head["classifier.out_proj.weight"], head["classifier.out_proj.bias"])}


def _token_classification_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    return {"logits": F.linear(out["last_hidden_state"], head["classifier.weight"], head["classifier.bias"])}


def _multiple_choice_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    logits = F.linear(out["pooler_output"], head["classifier.weight"], head["classifier.bias"])
    return {"logits": logits.view(-1, out["num_choices"])}


def _fill_mask_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    x = F.gelu(F.linear(out["last_hidden_state"], head["lm_head.dense.weight"], head["lm_head.dense.bias"]))
    x = F.layer_norm(
        x, (x.shape[-1],), head["lm_head.layer_norm.weight"], head["lm_head.layer_norm.bias"], config.layer_norm_eps
    )
    decoder = head.get("lm_head.decoder.weight", head["longformer.embeddings.word_embeddings.weight"])
    return {"logits": F.linear(x, decoder, head.get("lm_head.decoder.bias", head["lm_head.bias"]))}


def _feature_extraction_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    result = {"last_hidden_state": out["last_hidden_state"]}
    if out.get("pooler_output") is not None:
        result["pooler_output"] = out["pooler_output"]
    return result


# --- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One task: a transformers class and everything that differs about its head.

    Attributes:
        name: optimum's and the pipelines' task name.
        architecture: the transformers class (``config.architectures``).
        auto_class: the ``AutoModelFor...`` class a downstream job loads it with.
        pipeline_tag: the Hub's pipeline tag (model card).
        title: for people (``Longformer for ...``).
        global_attention: the convention (see ``global_attention_mask``) the class applies when the
            caller passes no ``global_attention_mask``.
        outputs: the outputs the check compares, by name.
        inputs: the check's input kind: ``pair`` (question and context), ``text``, ``masked``
            (text with ``<mask>`` tokens) or ``choices`` (a choices dimension).
        pooler: ``True`` the class has a pooler; ``False`` it has none (a checkpoint's pooler is
            dropped, with the reason); ``None`` kept when present.
        labels: the head's output size is a number of labels (``config.num_labels``).
        match: reads a ``Head`` as this task's (see ``Reading``).
        reference: the head's arithmetic: ``(tensors by class key, encoder outputs, config) -> outputs``.
        tied: the class's tied keys, target to source (``_tied_weights_keys``): saved once when
            the checkpoint's copies are equal, untied (``tie_word_embeddings: false``) when not.
        pipeline: the transformers 5 pipeline that runs the folder, or ``None`` where it has none.
        drops_head: the class is the encoder alone: keys outside it are dropped (and listed), which
            makes this task the way out for heads no transformers class computes.
        head_doc: the head the class needs, for messages and the README.
        problem_type: the class reads ``config.problem_type`` (``--problem-type``).
    """

    name: str
    architecture: str
    auto_class: str
    pipeline_tag: str
    title: str
    global_attention: str
    outputs: tuple[str, ...]
    inputs: str
    pooler: bool | None
    labels: bool
    match: Callable[[Head], list[Reading]]
    reference: Callable[[Mapping[str, Any], Mapping[str, Any], Any], dict[str, Any]]
    tied: Mapping[str, str] = field(default_factory=dict)
    pipeline: str | None = None
    drops_head: bool = False
    head_doc: str = ""
    problem_type: bool = False

    def model_class(self) -> Any:
        """The transformers class (imports transformers)."""
        import transformers

        return getattr(transformers, self.architecture)

    def loader_class(self) -> Any:
        """The ``AutoModelFor...`` class (imports transformers)."""
        import transformers

        return getattr(transformers, self.auto_class)


REGISTRY: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="question-answering",
            architecture="LongformerForQuestionAnswering",
            auto_class="AutoModelForQuestionAnswering",
            pipeline_tag="question-answering",
            title="question answering",
            global_attention="question",
            outputs=("start_logits", "end_logits"),
            inputs="pair",
            pooler=False,
            labels=False,
            match=_match_question_answering,
            reference=_qa_reference,
            head_doc="`qa_outputs` Linear(h, 2), or two Linear(h, 1) for start and end",
        ),
        Task(
            name="text-classification",
            architecture="LongformerForSequenceClassification",
            auto_class="AutoModelForSequenceClassification",
            pipeline_tag="text-classification",
            title="text classification",
            global_attention="first-token",
            outputs=("logits",),
            inputs="text",
            pooler=False,
            labels=True,
            match=_match_text_classification,
            reference=_text_classification_reference,
            head_doc="`classifier.dense` Linear(h, h) + `classifier.out_proj` Linear(h, n) on <s>",
            problem_type=True,
            pipeline="text-classification",
        ),
        Task(
            name="token-classification",
            architecture="LongformerForTokenClassification",
            auto_class="AutoModelForTokenClassification",
            pipeline_tag="token-classification",
            title="token classification",
            global_attention="none",
            outputs=("logits",),
            inputs="text",
            pooler=False,
            labels=True,
            match=_match_token_classification,
            reference=_token_classification_reference,
            head_doc="`classifier` Linear(h, n) on every token",
            pipeline="token-classification",
        ),
        Task(
            name="multiple-choice",
            architecture="LongformerForMultipleChoice",
            auto_class="AutoModelForMultipleChoice",
            pipeline_tag="multiple-choice",
            title="multiple choice",
            global_attention="after-question",
            outputs=("logits",),
            inputs="choices",
            pooler=True,
            labels=False,
            match=_match_multiple_choice,
            reference=_multiple_choice_reference,
            head_doc="the pooler + `classifier` Linear(h, 1) per choice",
        ),
        Task(
            name="fill-mask",
            architecture="LongformerForMaskedLM",
            auto_class="AutoModelForMaskedLM",
            pipeline_tag="fill-mask",
            title="masked language modelling",
            global_attention="none",
            outputs=("logits",),
            inputs="masked",
            pooler=False,
            labels=False,
            match=_match_fill_mask,
            reference=_fill_mask_reference,
            head_doc="`lm_head.dense`, `lm_head.layer_norm`, `lm_head.decoder` (tied to the word embeddings) "
            "+ `lm_head.bias`",
            tied={
                "lm_head.decoder.weight": "longformer.embeddings.word_embeddings.weight",
                "lm_head.decoder.bias": "lm_head.bias",
            },
            pipeline="fill-mask",
        ),
        Task(
            name="feature-extraction",
            architecture="LongformerModel",
            auto_class="AutoModel",
            pipeline_tag="feature-extraction",
            title="feature extraction",
            global_attention="none",
            outputs=("last_hidden_state", "pooler_output"),
            inputs="text",
            pooler=None,
            labels=False,
            match=_match_feature_extraction,
            reference=_feature_extraction_reference,
            head_doc="no head: the encoder alone (pooler kept when present)",
            pipeline="feature-extraction",
            drops_head=True,
        ),
    )
}

assert tuple(REGISTRY) == tuple(t for t in TASKS if t != "auto"), "choices.TASKS and the registry disagree"
assert set(GLOBAL_ATTENTION) - {"default"} <= set(GLOBAL_ATTENTION_CALLS)


def get(name: str) -> Task:
    """The task called ``name``.

    Raises:
        KeyError: no such task.
    """
    return REGISTRY[name]


def by_architecture(architecture: str) -> Task | None:
    """The task whose class is ``architecture`` (from a folder's ``config.json``), or ``None``."""
    return next((t for t in REGISTRY.values() if t.architecture == architecture), None)


def encoder_target(task: Task) -> str:
    """Where the encoder's keys go in the task's class (``LongformerModel`` has them at its root)."""
    return "" if task.architecture == "LongformerModel" else ENCODER_TARGET


def resolve_global_attention(task: Task, declared: str) -> str:
    """The convention the module trained with: ``default`` is the class's own."""
    return task.global_attention if declared == "default" else declared


def readings(head: Head) -> list[Reading]:
    """Every task's reading of ``head``, exact ones first, in registry order."""
    found = [r for task in REGISTRY.values() for r in task.match(head)]
    return sorted(found, key=lambda r: not r.exact)
