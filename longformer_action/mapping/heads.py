"""How each task's head looks in a state dict, registered per task (``@matcher``): read a head as tasks.

A matcher takes the keys and shapes outside the encoder (``Head``) and returns the readings of them
as its task (``Reading``): which checkpoint key goes to which class key, and how sure it is."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..registry.families import Shape
from ..registry.tasks import REGISTRY, of_family


@dataclass(frozen=True)
class Head:
    """The keys of a state dict outside the encoder, as a transformers head would see them.

    Attributes:
        keys: key (relative to ``prefix``) to shape.
        prefix: what precedes the head's keys (``model.`` when a transformers class is wrapped).
        hidden_size: the encoder's hidden size.
        pooler: whether the encoder's keys include a pooler.
        class_layout: the encoder is a transformers class's ``longformer`` (LED: ``led``) attribute
            and the head sits beside it, so the head's attribute names are the class's own.
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
        encoder_mapped: encoder key (relative to the encoder) to the class's key, for encoder
            weights the class keeps in its head (the pooler's dense layer as a classifier's).
    """

    task: str
    exact: bool
    mapped: Mapping[str, str] = field(default_factory=dict)
    combined: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    num_labels: int | None = None
    why: str = ""
    encoder_mapped: Mapping[str, str] = field(default_factory=dict)


#: Reads a head as one task's: the readings (none when the keys are not that task's head).
Matcher = Callable[[Head], list[Reading]]

#: Task name to its matcher, filled by ``@matcher`` (optimum's per-task registration).
MATCHERS: dict[str, Matcher] = {}


def matcher(*names: str) -> Callable[[Matcher], Matcher]:
    """Register the decorated function as the head matcher of the tasks ``names`` (``registry.tasks``)."""

    def register(function: Matcher) -> Matcher:
        for name in names:
            MATCHERS[name] = function
        return function

    return register


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


@matcher("question-answering")
def match_question_answering(head: Head) -> list[Reading]:
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


@matcher("text-classification")
def match_text_classification(head: Head) -> list[Reading]:
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
    # A Linear over the pooler's output computes what the class's head computes: the pooler is
    # tanh(dense(h[:, 0])) and LongformerClassificationHead is out_proj(tanh(dense(h[:, 0]))).
    single = _single_linear(head)
    if single and head.pooler:
        name, n = single
        return [
            Reading(
                "text-classification",
                False,
                _linear_keys(name, "classifier.out_proj"),
                num_labels=n,
                why=f"`{name}` Linear(h, {n}) on the pooler's output (the pooler becomes `classifier.dense`)",
                encoder_mapped={
                    "pooler.dense.weight": "classifier.dense.weight",
                    "pooler.dense.bias": "classifier.dense.bias",
                },
            )
        ]
    return []


@matcher("token-classification")
def match_token_classification(head: Head) -> list[Reading]:
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


@matcher("multiple-choice")
def match_multiple_choice(head: Head) -> list[Reading]:
    single = _single_linear(head)
    if not single or single[1] != 1 or not head.pooler:
        return []
    name = single[0]
    exact = head.class_layout and name == "classifier"
    return [Reading("multiple-choice", exact, _linear_keys(name, "classifier"), why=f"pooler + `{name}` Linear(h, 1)")]


@matcher("fill-mask")
def match_fill_mask(head: Head) -> list[Reading]:
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


@matcher("feature-extraction")
def match_feature_extraction(head: Head) -> list[Reading]:
    # exact only for a checkpoint that is the encoder alone; otherwise the way out for a custom head
    return [Reading("feature-extraction", not head.keys, why="the encoder alone")]


@matcher("text2text-generation")
def match_text2text_generation(head: Head) -> list[Reading]:
    keys, h = head.keys, head.hidden_size
    if set(keys) != {"lm_head.weight", "final_logits_bias"}:
        return []
    weight, bias = keys["lm_head.weight"], keys["final_logits_bias"]
    if len(weight) != 2 or weight[1] != h or bias != (1, weight[0]):
        return []
    mapped = {"lm_head.weight": "lm_head.weight", "final_logits_bias": "final_logits_bias"}
    return [Reading("text2text-generation", True, mapped, why="`lm_head` Linear(d, vocab) + `final_logits_bias`")]


def readings(head: Head, family: str = "longformer") -> list[Reading]:
    """Every task's reading of ``head`` in ``family``, exact ones first, in registry order."""
    found = [r for task in of_family(family) for r in MATCHERS[task.name](head)]
    return sorted(found, key=lambda r: not r.exact)


assert set(MATCHERS) == set(REGISTRY), "a task without a head matcher"
