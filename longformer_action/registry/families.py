"""The model families, as data: what a checkpoint's base model (the encoder, or LED's encoder and decoder)
looks like, where its config keeps each value, and the usual base models on the Hub.

A task belongs to a family: Longformer, or LED (Longformer Encoder-Decoder, the same paper's sibling
for summarisation). Standard library only at import time; transformers is imported by the methods
that need it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Family:
    """A model family: what a checkpoint's base model (encoder, or encoder and decoder) looks like.

    Attributes:
        name: the family's name (``Task.family``).
        title: for people.
        model_type: the base config's ``model_type``.
        base_kwargs: keyword arguments of ``base_class`` for the reference (no pooler: it is computed
            by hand).
        anchor: a key of ``base_class`` that only this family has; its prefix is where the base model
            lives in a checkpoint, and its shape is ``(n, hidden)``.
        global_mark: part of every global-attention key (what tells Longformer from BERT, LED from BART).
        class_attributes: the attribute a transformers head class keeps the base model in.
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
        embedding_keys: the base model's embeddings (what a module that froze them may leave out of its
            state dict), relative to the base model.
        part_names: what each top-level part of the base model is, for messages, in the classes' order.
        key_words: components that only keys of the base model have (a key with none of them is
            not the model's: a loss's or a metric's).
        base_noun: what the base model is called after the family's name (``a Longformer encoder``).
        article: the title's indefinite article (``a`` Longformer, ``an`` LED).
        parts: what the base model is, for messages (``the encoder``, ``the encoder and decoder``).
    """

    name: str
    title: str
    model_type: str
    base_kwargs: Mapping[str, Any]
    anchor: str
    global_mark: str
    class_attributes: tuple[str, ...]
    root_keys: tuple[str, ...]
    positions: tuple[str, ...]
    default_bases: tuple[tuple[int, str], ...]
    looks_like: str
    vocab_key: str
    layers: Mapping[str, str]
    fields: Mapping[str, str]
    compared: tuple[str, ...]
    offset_positions: bool
    embedding_keys: tuple[str, ...]
    part_names: Mapping[str, str]
    key_words: tuple[str, ...]
    base_noun: str
    article: str = "a"
    parts: str = "the encoder"

    @property
    def short(self) -> str:
        """The title's first word (``Longformer``, ``LED``)."""
        return self.title.split(" ")[0]

    def with_article(self, full: bool = True) -> str:
        """The title with its article, for sentences (``a Longformer``, ``an LED (...)``)."""
        return f"{self.article} {self.title if full else self.short}"

    @cached_property
    def config_class(self) -> str:
        """The transformers config class of ``model_type`` (``CONFIG_MAPPING_NAMES``)."""
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        return CONFIG_MAPPING_NAMES[self.model_type]

    @cached_property
    def base_class(self) -> str:
        """The transformers class of the base model (``MODEL_MAPPING_NAMES``; ``feature-extraction`` exports it);
        the check's reference runs the checkpoint's tensors in it."""
        from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

        return MODEL_MAPPING_NAMES[self.model_type]

    @cached_property
    def base_model_prefix(self) -> str:
        """Where the base model's keys go in the family's head classes: the classes' ``base_model_prefix`` and a dot."""
        return f"{self.base_model_class().base_model_prefix}."

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
            base_kwargs={"add_pooling_layer": False},
            anchor="embeddings.word_embeddings.weight",
            global_mark=".attention.self.query_global.",
            class_attributes=("longformer.", "roberta."),
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
            embedding_keys=(
                "embeddings.word_embeddings.weight",
                "embeddings.position_embeddings.weight",
                "embeddings.LayerNorm.weight",
                "embeddings.LayerNorm.bias",
            ),
            part_names={"embeddings": "the embeddings", "encoder": "the attention layers", "pooler": "the pooler"},
            key_words=("embeddings", "encoder", "layer", "attention"),
            base_noun="encoder",
        ),
        Family(
            name="led",
            title="LED (Longformer Encoder-Decoder)",
            model_type="led",
            base_kwargs={},
            anchor="encoder.embed_positions.weight",
            global_mark=".longformer_self_attn.query_global.",
            class_attributes=("led.",),
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
            embedding_keys=(
                "shared.weight",
                "encoder.embed_positions.weight",
                "encoder.layernorm_embedding.weight",
                "encoder.layernorm_embedding.bias",
                "decoder.embed_positions.weight",
                "decoder.layernorm_embedding.weight",
                "decoder.layernorm_embedding.bias",
            ),
            part_names={"shared": "the shared embeddings", "encoder": "the encoder", "decoder": "the decoder"},
            key_words=("shared", "encoder", "decoder", "layers", "self_attn"),
            base_noun="encoder-decoder model",
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
