"""The task table: what differs between Longformer's heads (and LED's), as data.

Each ``Task`` says which transformers class computes it, the check's inputs and outputs, the pipeline
tag, and the global attention the class applies when the caller passes none. How a head looks in a
state dict is registered per task by ``mapping/heads.py``; the head's arithmetic for the check's
reference by ``checking/reference.py``. Mapping, conversion, the check, the report and the command
line look a task up here; none of them branches on a task's name.

Task names follow optimum's ``TasksManager`` and transformers' pipelines. The shape of the registry
follows transformers' auto mappings: one entry per task, looked up by name or by architecture.

A task belongs to a model family (``registry/families.py``).

Standard library only at import time: what transformers knows (the classes, the auto classes, the tied
keys, the base model's prefix) is read from it when first asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .attention import GLOBAL_ATTENTION_CALLS
from .families import FAMILIES
from .names import GLOBAL_ATTENTION, TASKS


@dataclass(frozen=True)
class Task:
    """One task: a transformers class and everything that differs about its head.

    Attributes:
        name: optimum's and the pipelines' task name.
        auto_mapping: the transformers auto mapping of the task (a ``MODEL_FOR_..._MAPPING_NAMES``
            of ``transformers.models.auto.modeling_auto``, model type to class name): the class
            (``architecture``) and the auto class (``auto_class``) are read from it.
        pipeline_tag: the Hub's pipeline tag (model card).
        title: for people (``Longformer for ...``).
        global_attention: the convention (see ``global_attention_mask``) the class applies when the
            caller passes no ``global_attention_mask``.
        outputs: the outputs the check compares, by name.
        inputs: the check's input kind: ``pair`` (question and context), ``text``, ``masked``
            (text with ``<mask>`` tokens), ``choices`` (a choices dimension) or ``seq2seq`` (source
            texts and teacher-forced ``decoder_input_ids``).
        pooler: ``True`` the class has a pooler; ``False`` it has none (a checkpoint's pooler is
            dropped, with the reason); ``None`` kept when present.
        labels: the head's output size is a number of labels (``config.num_labels``).
        tie_policy: what happens when the checkpoint's copies of tied keys (``tied``) differ:
            ``untie`` (save every copy, ``tie_word_embeddings: false``) or ``refuse`` (an
            error: the class ties them whatever the config says).
        pipeline: the transformers 5 pipeline that runs the folder, or ``None`` where it has none.
        drops_head: the class is the encoder alone: keys outside it are dropped (and listed), which
            makes this task the way out for heads no transformers class computes.
        head_doc: the head the class needs, for messages and the README.
        problem_type: the class reads ``config.problem_type`` (``--problem-type``).
        read_outputs: one line of Python that turns ``outputs`` into an answer (model card).
        family: the model family (``FAMILIES``).
        usual_global_attention: the convention ``--global-attention default`` means when the
            family's users put global attention where the class does not (LED: the first token);
            ``None``: the class's own.
        legacy_keys: tied keys written anyway, alias to the key they are tied to, because older
            transformers read the tied value through the alias (4.44-4.50 load ``lm_head.bias``
            from ``lm_head.decoder.bias`` and leave it zero without it).
    """

    name: str
    auto_mapping: str
    pipeline_tag: str
    title: str
    global_attention: str
    outputs: tuple[str, ...]
    inputs: str
    pooler: bool | None
    labels: bool
    pipeline: str | None = None
    drops_head: bool = False
    head_doc: str = ""
    problem_type: bool = False
    tie_policy: str = "untie"
    family: str = "longformer"
    usual_global_attention: str | None = None
    read_outputs: str = ""
    legacy_keys: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def architecture(self) -> str:
        """The transformers class (``config.architectures``): the auto mapping's class for the family's model type."""
        from transformers.models.auto import modeling_auto

        return getattr(modeling_auto, self.auto_mapping)[FAMILIES[self.family].model_type]

    @cached_property
    def auto_class(self) -> str:
        """The ``AutoModelFor...`` class a downstream job loads the folder with: the one built on ``auto_mapping``."""
        from transformers.models.auto import modeling_auto

        names = getattr(modeling_auto, self.auto_mapping)
        return next(
            name
            for name, value in vars(modeling_auto).items()
            if name.startswith("AutoModel")
            and getattr(getattr(value, "_model_mapping", None), "_model_mapping", None) is names
        )

    @cached_property
    def tied(self) -> dict[str, str]:
        """The class's tied keys, target to source: its ``_tied_weights_keys`` and its base model's (under
        ``base_model_prefix``). Saved once when the checkpoint's copies are equal; else ``tie_policy`` decides."""
        cls, base = self.model_class(), FAMILIES[self.family].base_model_class()
        tied = dict(cls._tied_weights_keys or {})
        if cls is not base:
            prefix = base_model_prefix(self)
            tied |= {prefix + target: prefix + source for target, source in (base._tied_weights_keys or {}).items()}
        return tied

    def model_class(self) -> Any:
        """The transformers class (imports transformers)."""
        import transformers

        return getattr(transformers, self.architecture)

    def loader_class(self) -> Any:
        """The ``AutoModelFor...`` class (imports transformers)."""
        import transformers

        return getattr(transformers, self.auto_class)


#: Every entry, one per (family, task name).
ENTRIES: tuple[Task, ...] = (
    Task(
        name="question-answering",
        read_outputs=(
            "start, end = int(outputs.start_logits[0].argmax()), int(outputs.end_logits[0].argmax())  "
            "# best span: maximise start + end logits over the context, end >= start"
        ),
        auto_mapping="MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
        pipeline_tag="question-answering",
        title="question answering",
        global_attention="question",
        outputs=("start_logits", "end_logits"),
        inputs="pair",
        pooler=False,
        labels=False,
        head_doc="`qa_outputs` Linear(h, 2), or two Linear(h, 1) for start and end",
    ),
    Task(
        name="text-classification",
        read_outputs="label = model.config.id2label[int(outputs.logits[0].argmax())]",
        auto_mapping="MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
        pipeline_tag="text-classification",
        title="text classification",
        global_attention="first-token",
        outputs=("logits",),
        inputs="text",
        pooler=False,
        labels=True,
        head_doc="`classifier.dense` Linear(h, h) + `classifier.out_proj` Linear(h, n) on <s>",
        problem_type=True,
        pipeline="text-classification",
    ),
    Task(
        name="token-classification",
        read_outputs="tags = [model.config.id2label[int(i)] for i in outputs.logits[0].argmax(-1)]",
        auto_mapping="MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
        pipeline_tag="token-classification",
        title="token classification",
        global_attention="none",
        outputs=("logits",),
        inputs="text",
        pooler=False,
        labels=True,
        head_doc="`classifier` Linear(h, n) on every token",
        pipeline="token-classification",
    ),
    Task(
        name="multiple-choice",
        read_outputs="choice = int(outputs.logits[0].argmax())  # index into the choices",
        auto_mapping="MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
        pipeline_tag="multiple-choice",
        title="multiple choice",
        global_attention="after-question",
        outputs=("logits",),
        inputs="choices",
        pooler=True,
        labels=False,
        head_doc="the pooler + `classifier` Linear(h, 1) per choice",
    ),
    Task(
        name="fill-mask",
        read_outputs=(
            "word = tokenizer.decode(outputs.logits[0, inputs['input_ids'][0] == tokenizer.mask_token_id].argmax(-1))"
        ),
        auto_mapping="MODEL_FOR_MASKED_LM_MAPPING_NAMES",
        pipeline_tag="fill-mask",
        title="masked language modelling",
        global_attention="none",
        outputs=("logits",),
        inputs="masked",
        pooler=False,
        labels=False,
        head_doc="`lm_head.dense`, `lm_head.layer_norm`, `lm_head.decoder` (tied to the word embeddings) "
        "+ `lm_head.bias`",
        legacy_keys={"lm_head.decoder.bias": "lm_head.bias"},
        pipeline="fill-mask",
    ),
    Task(
        name="feature-extraction",
        read_outputs="features = outputs.last_hidden_state  # (batch, seq, hidden)",
        auto_mapping="MODEL_MAPPING_NAMES",
        pipeline_tag="feature-extraction",
        title="feature extraction",
        global_attention="none",
        outputs=("last_hidden_state", "pooler_output"),
        inputs="text",
        pooler=None,
        labels=False,
        head_doc="no head: the encoder alone (pooler kept when present)",
        pipeline="feature-extraction",
        drops_head=True,
    ),
    Task(
        name="text2text-generation",
        read_outputs="summary = tokenizer.batch_decode(outputs, skip_special_tokens=True)[0]",
        auto_mapping="MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
        pipeline_tag="summarization",
        title="summarization (text-to-text generation)",
        global_attention="none",
        usual_global_attention="first-token",
        outputs=("logits",),
        inputs="seq2seq",
        pooler=False,
        labels=False,
        head_doc="`lm_head` Linear(d, vocab) without bias (tied to `led.shared`) + `final_logits_bias` (1, vocab)",
        tie_policy="refuse",
        family="led",
    ),
    Task(
        name="feature-extraction",
        read_outputs="features = outputs.last_hidden_state  # (batch, seq, hidden)",
        auto_mapping="MODEL_MAPPING_NAMES",
        pipeline_tag="feature-extraction",
        title="feature extraction",
        global_attention="none",
        usual_global_attention="first-token",
        outputs=("last_hidden_state", "encoder_last_hidden_state"),
        inputs="seq2seq",
        pooler=False,
        labels=False,
        head_doc="no head: the encoder and decoder alone",
        tie_policy="refuse",
        drops_head=True,
        family="led",
    ),
)


_BY_FAMILY: dict[tuple[str, str], Task] = {(t.family, t.name): t for t in ENTRIES}


#: One entry per task name (the first family that has it), in ``choices.TASKS`` order.
REGISTRY: dict[str, Task] = {
    name: next(t for t in ENTRIES if t.name == name) for name in dict.fromkeys(t.name for t in ENTRIES)
}


assert tuple(REGISTRY) == tuple(t for t in TASKS if t != "auto"), "choices.TASKS and the registry disagree"


assert {t.family for t in ENTRIES} <= set(FAMILIES)


assert set(GLOBAL_ATTENTION) - {"default"} <= set(GLOBAL_ATTENTION_CALLS)


def get(name: str, family: str | None = None) -> Task:
    """The task called ``name`` (of ``family``; default: the first family that has it).

    Raises:
        KeyError: no such task (in that family).
    """
    return REGISTRY[name] if family is None else _BY_FAMILY[(family, name)]


def supports(family: str, name: str) -> bool:
    """Whether ``family`` has a transformers class for the task ``name``."""
    return (family, name) in _BY_FAMILY


def of_family(family: str) -> list[Task]:
    """The family's tasks, in registry order."""
    return [t for t in ENTRIES if t.family == family]


def by_architecture(architecture: str) -> Task | None:
    """The task whose class is ``architecture`` (from a folder's ``config.json``), or ``None``."""
    return next((t for t in ENTRIES if t.architecture == architecture), None)


def base_model_prefix(task: Task) -> str:
    """Where the base model's keys go in the task's class: its ``base_model_prefix`` and a dot (``longformer.``);
    ``""`` for the base class itself, which has them at its root."""
    family = FAMILIES[task.family]
    return "" if task.architecture == family.base_class else family.base_model_prefix


def resolve_global_attention(task: Task, declared: str) -> str:
    """The convention the module trained with: ``default`` is the family's usual one, else the class's own."""
    if declared != "default":
        return declared
    return task.usual_global_attention or task.global_attention
