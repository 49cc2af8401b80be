"""One registry of tasks: what differs between Longformer's heads (and LED's), as data.

Each ``Task`` says which transformers class computes it, how its head looks in a state dict (and how
to recognise it under other names), the head's arithmetic for the check's reference (written with
``torch.nn.functional``, independent of the class), the check's inputs, the pipeline tag, and the
global attention the class applies when the caller passes none. Mapping, conversion, the check, the
report and the command line look a task up here; none of them branches on a task's name.

Task names follow optimum's ``TasksManager`` and transformers' pipelines. The shape of the registry
follows transformers' auto mappings: one entry per task, looked up by name or by architecture.

A task belongs to a model family (``Family``): Longformer, or LED (Longformer Encoder-Decoder, the
same paper's sibling for summarisation). What differs between families (config class, where the base
model's keys live, how it is recognised, the usual base models on the Hub) is data too.

Standard library only at import time; torch is imported by the functions that compute.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .choices import GLOBAL_ATTENTION, TASKS

Shape = tuple[int, ...]

#: The encoder's keys in every Longformer class of the registry (``LongformerModel`` itself has none).
ENCODER_TARGET = "longformer."


# --- model families ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A model family: what a checkpoint's base model (encoder, or encoder and decoder) looks like.

    Attributes:
        name: the family's name (``Task.family``).
        title: for people.
        model_type: the base config's ``model_type``.
        config_class: the transformers config class.
        base_class: the transformers class of the base model (``feature-extraction`` exports it);
            the check's reference runs the checkpoint's tensors in it.
        base_kwargs: keyword arguments of ``base_class`` for the reference (no pooler: it is computed
            by hand).
        anchor: a key of ``base_class`` that only this family has; its prefix is where the base model
            lives in a checkpoint, and its shape is ``(n, hidden)``.
        global_mark: part of every global-attention key (what tells Longformer from BERT, LED from BART).
        class_attributes: the attribute a transformers head class keeps the base model in.
        target: where the base model's keys go in the family's head classes.
        root_keys: the first component of the base model's keys (a bare base model's state dict).
        positions: the config's position-table sizes (for messages).
        default_bases: ``(hidden size, Hub id)`` of the usual base models, smallest first.
        looks_like: what a checkpoint without global-attention weights is instead.
        vocab_key: the base model's token embeddings ``(vocab, hidden)``.
        layers: the config's layer counts, by the key prefix of their stacks in the base model.
        fields: the config attribute that holds each value the code reads from a config, by role
            (``value``): ``hidden_size``, ``layers`` (the layers ``attention_window`` has one entry
            for), ``attention_window``, ``vocab_size``, ``max_positions`` (the source's position
            table), ``max_target_positions`` (the decoder's), and the token ids ``sep_token_id``
            (LED has no separator of its own: its ``</s>``, ``eos_token_id``), ``bos_token_id``,
            ``pad_token_id``, ``eos_token_id``, ``decoder_start_token_id``; ``layer_norm_eps``. A role
            the family lacks is absent. transformers 5 configs raise ``AttributeError`` on a field
            their class does not define (``LEDConfig.sep_token_id``), so no code reads one directly.
        compared: config fields that change what the model computes (compared with a config the
            checkpoint's hyper-parameters record).
        offset_positions: the position ids start after ``pad_token_id`` (RoBERTa's), so the table
            holds ``max_positions - pad_token_id - 1`` tokens; otherwise they start at 0 and count the
            padding to a multiple of the attention window too (LED's).
        article: the title's indefinite article (``a`` Longformer, ``an`` LED).
        parts: what the base model is, for messages (``the encoder``, ``the encoder and decoder``).
    """

    name: str
    title: str
    model_type: str
    config_class: str
    base_class: str
    base_kwargs: Mapping[str, Any]
    anchor: str
    global_mark: str
    class_attributes: tuple[str, ...]
    target: str
    root_keys: tuple[str, ...]
    positions: tuple[str, ...]
    default_bases: tuple[tuple[int, str], ...]
    looks_like: str
    vocab_key: str
    layers: Mapping[str, str]
    fields: Mapping[str, str]
    compared: tuple[str, ...]
    offset_positions: bool
    article: str = "a"
    parts: str = "the encoder"

    @property
    def short(self) -> str:
        """The title's first word (``Longformer``, ``LED``)."""
        return self.title.split(" ")[0]

    def a(self, full: bool = True) -> str:
        """The title with its article, for sentences (``a Longformer``, ``an LED (...)``)."""
        return f"{self.article} {self.title if full else self.short}"

    def config_cls(self) -> Any:
        """The transformers config class (imports transformers)."""
        import transformers

        return getattr(transformers, self.config_class)

    def base_model_class(self) -> Any:
        """The transformers class of the base model (imports transformers)."""
        import transformers

        return getattr(transformers, self.base_class)

    def value(self, config: Any, role: str) -> Any:
        """The value of ``role`` (see ``fields``) in ``config``, a config object or a ``config.json`` dict.

        Raises:
            KeyError: the family has no such role (a bug: the caller asked LED for ``layer_norm_eps``).
        """
        name = self.fields[role]
        if isinstance(config, Mapping):
            return config.get(name)
        return getattr(config, name, None)

    def single_fields(self) -> tuple[str, ...]:
        """The fields one hyper-parameter of that name is compared on (a script's ``args.attention_window``)."""
        return tuple(self.fields[role] for role in ("attention_window", "max_positions", "layers"))

    def max_source_tokens(self, config: Any) -> int:
        """The longest input (tokens, specials included) whose positions fit the position table.

        LED counts the padding to a multiple of the attention window among its positions; Longformer
        does not (padding takes ``pad_token_id``'s position), but its positions start after it.
        """
        positions = int(self.value(config, "max_positions"))
        if self.offset_positions:
            return positions - int(self.value(config, "pad_token_id") or 0) - 2
        window = self.value(config, "attention_window")
        return positions - int(max(window) if isinstance(window, (list, tuple)) else window)

    def default_base(self, hidden_size: int) -> str:
        """The Hub id of the usual base model with this hidden size (the smallest when none has it)."""
        return next((hub_id for size, hub_id in self.default_bases if size == hidden_size), self.default_bases[0][1])


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="longformer",
            title="Longformer",
            model_type="longformer",
            config_class="LongformerConfig",
            base_class="LongformerModel",
            base_kwargs={"add_pooling_layer": False},
            anchor="embeddings.word_embeddings.weight",
            global_mark=".attention.self.query_global.",
            class_attributes=("longformer.", "roberta."),
            target=ENCODER_TARGET,
            root_keys=("embeddings", "encoder", "pooler"),
            positions=("max_position_embeddings",),
            default_bases=((768, "allenai/longformer-base-4096"), (1024, "allenai/longformer-large-4096")),
            looks_like="a BERT or RoBERTa checkpoint",
            vocab_key="embeddings.word_embeddings.weight",
            layers={"num_hidden_layers": "encoder.layer."},
            fields={
                "hidden_size": "hidden_size",
                "layers": "num_hidden_layers",
                "attention_window": "attention_window",
                "vocab_size": "vocab_size",
                "max_positions": "max_position_embeddings",
                "sep_token_id": "sep_token_id",
                "bos_token_id": "bos_token_id",
                "pad_token_id": "pad_token_id",
                "eos_token_id": "eos_token_id",
                "layer_norm_eps": "layer_norm_eps",
            },
            compared=(
                "attention_window",
                "num_hidden_layers",
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
                "hidden_act",
                "layer_norm_eps",
                "max_position_embeddings",
                "vocab_size",
                "type_vocab_size",
                "pad_token_id",
            ),
            offset_positions=True,
        ),
        Family(
            name="led",
            title="LED (Longformer Encoder-Decoder)",
            model_type="led",
            config_class="LEDConfig",
            base_class="LEDModel",
            base_kwargs={},
            anchor="encoder.embed_positions.weight",
            global_mark=".longformer_self_attn.query_global.",
            class_attributes=("led.",),
            target="led.",
            root_keys=("shared", "encoder", "decoder"),
            positions=("max_encoder_position_embeddings", "max_decoder_position_embeddings"),
            default_bases=((768, "allenai/led-base-16384"), (1024, "allenai/led-large-16384")),
            looks_like="a BART checkpoint",
            vocab_key="shared.weight",
            layers={"encoder_layers": "encoder.layers.", "decoder_layers": "decoder.layers."},
            fields={
                "hidden_size": "d_model",
                "layers": "encoder_layers",
                "attention_window": "attention_window",
                "vocab_size": "vocab_size",
                "max_positions": "max_encoder_position_embeddings",
                "max_target_positions": "max_decoder_position_embeddings",
                "sep_token_id": "eos_token_id",
                "bos_token_id": "bos_token_id",
                "pad_token_id": "pad_token_id",
                "eos_token_id": "eos_token_id",
                "decoder_start_token_id": "decoder_start_token_id",
            },
            compared=(
                "attention_window",
                "d_model",
                "encoder_layers",
                "decoder_layers",
                "encoder_attention_heads",
                "decoder_attention_heads",
                "encoder_ffn_dim",
                "decoder_ffn_dim",
                "activation_function",
                "max_encoder_position_embeddings",
                "max_decoder_position_embeddings",
                "vocab_size",
                "pad_token_id",
            ),
            offset_positions=False,
            article="an",
            parts="the encoder and decoder",
        ),
    )
}


def family_of_model_type(model_type: str | None) -> Family | None:
    """The family whose base config has this ``model_type``, or ``None``."""
    return next((f for f in FAMILIES.values() if f.model_type == model_type), None)


def family_of_config(config: Any) -> Family:
    """The family of a config object or ``config.json`` dict, by its ``model_type`` (Longformer when unknown)."""
    model_type = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    return family_of_model_type(model_type) or FAMILIES["longformer"]


def family_of_config_class(qualname: str) -> Family | None:
    """The family whose config class ``qualname`` names (``transformers.LEDConfig``), or ``None``."""
    return next((f for f in FAMILIES.values() if qualname.rsplit(".", 1)[-1] == f.config_class), None)


def config_value(config: Any, role: str) -> Any:
    """The value of ``role`` in ``config``, read through its family's ``Family.fields`` (see ``Family.value``)."""
    return family_of_config(config).value(config, role)


def sep_token_id(config: Any) -> int:
    """The separator of a config: ``sep_token_id``, or ``eos_token_id`` for LED, which has no separator of its own."""
    return int(config_value(config, "sep_token_id"))


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


def _match_text2text_generation(head: Head) -> list[Reading]:
    keys, h = head.keys, head.hidden_size
    if set(keys) != {"lm_head.weight", "final_logits_bias"}:
        return []
    weight, bias = keys["lm_head.weight"], keys["final_logits_bias"]
    if len(weight) != 2 or weight[1] != h or bias != (1, weight[0]):
        return []
    mapped = {"lm_head.weight": "lm_head.weight", "final_logits_bias": "final_logits_bias"}
    return [Reading("text2text-generation", True, mapped, why="`lm_head` Linear(d, vocab) + `final_logits_bias`")]


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
        x,
        (x.shape[-1],),
        head["lm_head.layer_norm.weight"],
        head["lm_head.layer_norm.bias"],
        config_value(config, "layer_norm_eps"),
    )
    decoder = head.get("lm_head.decoder.weight", head["longformer.embeddings.word_embeddings.weight"])
    return {"logits": F.linear(x, decoder, head.get("lm_head.decoder.bias", head["lm_head.bias"]))}


def _feature_extraction_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    result = {"last_hidden_state": out["last_hidden_state"]}
    if out.get("pooler_output") is not None:
        result["pooler_output"] = out["pooler_output"]
    return result


def _text2text_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    weight = head.get("lm_head.weight", head["led.shared.weight"])
    return {"logits": F.linear(out["last_hidden_state"], weight) + head["final_logits_bias"]}


def _seq2seq_feature_extraction_reference(
    head: Mapping[str, Any], out: Mapping[str, Any], config: Any
) -> dict[str, Any]:
    return {
        "last_hidden_state": out["last_hidden_state"],
        "encoder_last_hidden_state": out["encoder_last_hidden_state"],
    }


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
            (text with ``<mask>`` tokens), ``choices`` (a choices dimension) or ``seq2seq`` (source
            texts and teacher-forced ``decoder_input_ids``).
        pooler: ``True`` the class has a pooler; ``False`` it has none (a checkpoint's pooler is
            dropped, with the reason); ``None`` kept when present.
        labels: the head's output size is a number of labels (``config.num_labels``).
        match: reads a ``Head`` as this task's (see ``Reading``).
        reference: the head's arithmetic: ``(tensors by class key, encoder outputs, config) -> outputs``.
        tied: the class's tied keys, target to source (``_tied_weights_keys``): saved once when
            the checkpoint's copies are equal; when they are not, ``tie_policy`` decides.
        tie_policy: ``untie`` (save every copy, ``tie_word_embeddings: false``) or ``refuse`` (an
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
    tie_policy: str = "untie"
    family: str = "longformer"
    usual_global_attention: str | None = None
    read_outputs: str = ""
    legacy_keys: Mapping[str, str] = field(default_factory=dict)

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
        read_outputs="label = model.config.id2label[int(outputs.logits[0].argmax())]",
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
        read_outputs="tags = [model.config.id2label[int(i)] for i in outputs.logits[0].argmax(-1)]",
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
        read_outputs="choice = int(outputs.logits[0].argmax())  # index into the choices",
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
        read_outputs=(
            "word = tokenizer.decode(outputs.logits[0, inputs['input_ids'][0] == tokenizer.mask_token_id].argmax(-1))"
        ),
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
        legacy_keys={"lm_head.decoder.bias": "lm_head.bias"},
        pipeline="fill-mask",
    ),
    Task(
        name="feature-extraction",
        read_outputs="features = outputs.last_hidden_state  # (batch, seq, hidden)",
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
    Task(
        name="text2text-generation",
        read_outputs="summary = tokenizer.batch_decode(outputs, skip_special_tokens=True)[0]",
        architecture="LEDForConditionalGeneration",
        auto_class="AutoModelForSeq2SeqLM",
        pipeline_tag="summarization",
        title="summarization (text-to-text generation)",
        global_attention="none",
        usual_global_attention="first-token",
        outputs=("logits",),
        inputs="seq2seq",
        pooler=False,
        labels=False,
        match=_match_text2text_generation,
        reference=_text2text_reference,
        head_doc="`lm_head` Linear(d, vocab) without bias (tied to `led.shared`) + `final_logits_bias` (1, vocab)",
        tied={
            "lm_head.weight": "led.shared.weight",
            "led.encoder.embed_tokens.weight": "led.shared.weight",
            "led.decoder.embed_tokens.weight": "led.shared.weight",
        },
        tie_policy="refuse",
        family="led",
    ),
    Task(
        name="feature-extraction",
        read_outputs="features = outputs.last_hidden_state  # (batch, seq, hidden)",
        architecture="LEDModel",
        auto_class="AutoModel",
        pipeline_tag="feature-extraction",
        title="feature extraction",
        global_attention="none",
        usual_global_attention="first-token",
        outputs=("last_hidden_state", "encoder_last_hidden_state"),
        inputs="seq2seq",
        pooler=False,
        labels=False,
        match=_match_feature_extraction,
        reference=_seq2seq_feature_extraction_reference,
        head_doc="no head: the encoder and decoder alone",
        tied={"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"},
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


def encoder_target(task: Task) -> str:
    """Where the base model's keys go in the task's class (the base class itself has them at its root)."""
    family = FAMILIES[task.family]
    return "" if task.architecture == family.base_class else family.target


def resolve_global_attention(task: Task, declared: str) -> str:
    """The convention the module trained with: ``default`` is the family's usual one, else the class's own."""
    if declared != "default":
        return declared
    return task.usual_global_attention or task.global_attention


def readings(head: Head, family: str = "longformer") -> list[Reading]:
    """Every task's reading of ``head`` in ``family``, exact ones first, in registry order."""
    found = [r for task in of_family(family) for r in task.match(head)]
    return sorted(found, key=lambda r: not r.exact)
