"""The embedded default: a tiny Longformer, a tokenizer, and a real Lightning training run, offline.

Used by ``longformer-convert demo`` and by the tests, which need real checkpoints written by a
real ``Trainer``. Nothing here touches the network.
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
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

QUESTION = "Where is the Eiffel Tower?"
CONTEXT = "The capital of France is Paris. The Eiffel Tower stands in Paris, on the Champ de Mars."

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


def make_tokenizer(folder: Path) -> Any:
    """Train a byte-level BPE tokenizer on ``CORPUS`` and save it as a ``LongformerTokenizer``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LongformerTokenizer

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(
        list(CORPUS) * 4, vocab_size=400, min_frequency=1, special_tokens=specials, show_progress=False
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = LongformerTokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.model_max_length = TINY_CONFIG["max_position_embeddings"] - 2
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_base_model(folder: Path, *, tokenizer: bool = True, **overrides: Any) -> Path:
    """Write a tiny base model folder: ``config.json`` and (optionally) tokenizer files; no weights."""
    from transformers import LongformerConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = 400
    if tokenizer:
        vocab_size = len(make_tokenizer(folder))
    config = LongformerConfig(**{**TINY_CONFIG, "vocab_size": vocab_size, **overrides})
    config.save_pretrained(folder)
    return folder


def _lightning(package: str) -> Any:
    return importlib.import_module("lightning.pytorch" if package == "lightning" else "pytorch_lightning")


def make_module(
    base_folder: Path, *, layout: str = "wrapped", package: str = "pytorch_lightning", **hparams: Any
) -> Any:
    """A LightningModule around a tiny Longformer, initialised with a fixed seed.

    Args:
        base_folder: a folder from ``make_base_model``.
        layout: ``wrapped`` (``self.model`` is a ``LongformerForQuestionAnswering``) or ``origin``
            (``self.model`` is a ``LongformerModel`` and ``self.qa_outputs`` the head, as allenai's
            TriviaQA code had it).
        package: ``pytorch_lightning`` or ``lightning``.
        hparams: extra hyper-parameters to save in the checkpoint.
    """
    import torch
    from torch import nn
    from transformers import LongformerConfig, LongformerForQuestionAnswering, LongformerModel

    pl = _lightning(package)
    config = LongformerConfig.from_pretrained(base_folder)

    class QAModule(pl.LightningModule):
        def __init__(self, lr: float = 1e-3, **extra: Any) -> None:
            super().__init__()
            self.save_hyperparameters()
            torch.manual_seed(0)
            if layout == "origin":
                self.model = LongformerModel(config, add_pooling_layer=True)
                self.qa_outputs = nn.Linear(config.hidden_size, 2)
            else:
                self.model = LongformerForQuestionAnswering(config)

        def forward(self, input_ids: Any, attention_mask: Any, global_attention_mask: Any) -> tuple[Any, Any]:
            if layout == "origin":
                hidden = self.model(
                    input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask
                ).last_hidden_state
                start, end = self.qa_outputs(hidden).split(1, dim=-1)
                return start.squeeze(-1), end.squeeze(-1)
            out = self.model(input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask)
            return out.start_logits, out.end_logits

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            start, end = self(batch["input_ids"], batch["attention_mask"], batch["global_attention_mask"])
            loss_fn = nn.CrossEntropyLoss()
            return (loss_fn(start, batch["start"]) + loss_fn(end, batch["end"])) / 2

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    return QAModule(**hparams)


def qa_batches(base_folder: Path, count: int, batch_size: int = 2, length: int = 48) -> list[dict[str, Any]]:
    """Random question-answering batches (ids, masks, global attention on 8 tokens, start/end labels)."""
    import torch

    config = json.loads((base_folder / "config.json").read_text())
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        ids = torch.randint(5, config["vocab_size"], (batch_size, length), generator=generator)
        ids[:, 0] = 0
        global_mask = torch.zeros_like(ids)
        global_mask[:, :8] = 1
        batches.append(
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "global_attention_mask": global_mask,
                "start": torch.randint(10, length - 4, (batch_size,), generator=generator),
                "end": torch.randint(10, length - 4, (batch_size,), generator=generator),
            }
        )
    return batches


def fit_and_save(module: Any, batches: list[dict[str, Any]], path: Path, *, package: str = "pytorch_lightning") -> Path:
    """Fit ``module`` on ``batches`` with a real ``Trainer`` (one step per batch) and save its checkpoint."""
    from torch.utils.data import DataLoader

    pl = _lightning(package)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            max_steps=len(batches),
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
    return path


def train_checkpoint(
    base_folder: Path,
    path: Path,
    *,
    layout: str = "wrapped",
    package: str = "pytorch_lightning",
    steps: int = 3,
    **hparams: Any,
) -> Path:
    """Train a tiny model for a few steps with a real ``Trainer`` (AdamW) and save its checkpoint.

    Returns:
        ``path``, a Lightning checkpoint with optimizer state.
    """
    module = make_module(base_folder, layout=layout, package=package, **hparams)
    return fit_and_save(module, qa_batches(base_folder, steps), path, package=package)
