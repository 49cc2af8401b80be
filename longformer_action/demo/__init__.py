"""The embedded default: a tiny Longformer (or LED), a tokenizer, and a real Lightning training run, offline.

Used by ``longformer-convert demo`` and by the tests, which need real checkpoints written by a
real ``Trainer``. Nothing here touches the network.
"""

from .base import CORPUS, TINY_CONFIG, TINY_LED_CONFIG, TINY_LED_GENERATION, make_base_model, make_tokenizer
from .modules import LAYOUTS, LOSSES, SIBLING_HEADS, batches, make_crf, make_module
from .training import fit_and_save, train_checkpoint, train_fabric_checkpoint, train_with_transformers_trainer

__all__ = [
    "CORPUS",
    "LAYOUTS",
    "LOSSES",
    "SIBLING_HEADS",
    "TINY_CONFIG",
    "TINY_LED_CONFIG",
    "TINY_LED_GENERATION",
    "batches",
    "fit_and_save",
    "make_base_model",
    "make_crf",
    "make_module",
    "make_tokenizer",
    "train_checkpoint",
    "train_fabric_checkpoint",
    "train_with_transformers_trainer",
]
