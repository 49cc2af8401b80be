"""The demo's tiny base models: a Longformer or LED config and a byte-level BPE tokenizer trained here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: A small corpus to train the demo tokenizer on.
CORPUS = (
    "Longformer reads long documents with sliding window attention and global attention on the question.",
    "The capital of France is Paris. The Eiffel Tower stands in Paris, on the Champ de Mars.",
    "Lightning trains the model and writes a checkpoint; the converter turns it into a folder.",
    "Where is the Eiffel Tower? Who trains the model? What does the converter write?",
    "A question answering model predicts where the answer starts and where it ends in the context.",
)


#: A tiny Longformer: hidden size 32, 2 layers, attention window 8 (two-sided).
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "attention_window": 8,
    "max_position_embeddings": 258,
    "type_vocab_size": 1,
}


#: A tiny LED: d_model 32, 2 encoder and 2 decoder layers, attention window 8 (two-sided).
TINY_LED_CONFIG: dict[str, Any] = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "attention_window": 8,
    "max_encoder_position_embeddings": 256,
    "max_decoder_position_embeddings": 64,
}


#: The tiny LED's generation config (the converted folder's generation settings are read from it, as from a Hub
#: base model's).
TINY_LED_GENERATION = {"max_length": 32, "num_beams": 1, "no_repeat_ngram_size": 3}


def make_tokenizer(folder: Path, *, family: str = "longformer", max_length: int | None = None) -> Any:
    """Train a byte-level BPE tokenizer on ``CORPUS`` and save it as the family's tokenizer class.

    Args:
        folder: where to save it.
        family: ``longformer`` (``LongformerTokenizer``) or ``led`` (``LEDTokenizer``).
        max_length: ``model_max_length`` (default: the tiny Longformer's positions).
    """
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(
        list(CORPUS) * 4, vocab_size=400, min_frequency=1, special_tokens=specials, show_progress=False
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    cls = transformers.LEDTokenizer if family == "led" else transformers.LongformerTokenizer
    tokenizer = cls(vocab=model["vocab"], merges=merges)
    tokenizer.model_max_length = max_length or TINY_CONFIG["max_position_embeddings"] - 2
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_base_model(folder: Path, *, tokenizer: bool = True, family: str = "longformer", **overrides: Any) -> Path:
    """Write a tiny base model folder: ``config.json`` and (optionally) tokenizer files; no weights.

    Args:
        folder: the folder to write.
        tokenizer: also write tokenizer files (trained on ``CORPUS``).
        family: ``longformer`` (``TINY_CONFIG``) or ``led`` (``TINY_LED_CONFIG``, plus a
            ``generation_config.json``).
        overrides: config fields to change.
    """
    from transformers import GenerationConfig, LEDConfig, LongformerConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = 400
    led = family == "led"
    if tokenizer:
        limit = TINY_LED_CONFIG["max_encoder_position_embeddings"] if led else None
        vocab_size = len(make_tokenizer(folder, family=family, max_length=limit))
    cls, tiny = (LEDConfig, TINY_LED_CONFIG) if led else (LongformerConfig, TINY_CONFIG)
    config = cls(**{**tiny, "vocab_size": vocab_size, **overrides})
    config.save_pretrained(folder)
    if led:
        generation = GenerationConfig.from_model_config(config)
        generation.update(**TINY_LED_GENERATION)
        generation.save_pretrained(folder)
    return folder
