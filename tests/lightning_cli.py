"""A LightningModule configured the way ``LightningCLI`` configures it, for checkpoints whose
hyper-parameters LightningCLI wrote (``_instantiator``, ``_class_path``, and the config as
``{"class_path": "transformers.LongformerConfig", "init_args": {...}}``)."""

from __future__ import annotations

import sys
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from transformers import LongformerConfig, LongformerForSequenceClassification

#: Three labels, trained as a multi-label classifier.
LABELS = ("sports", "politics", "science")


class MultiLabelClassifier(pl.LightningModule):
    """A multi-label document classifier: the transformers class, the config given as an object."""

    def __init__(self, config: LongformerConfig, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.model = LongformerForSequenceClassification(config)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        logits = self.model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.binary_cross_entropy_with_logits(logits, F.one_hot(batch["label"], len(LABELS)).float())

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def make_module(base_config: dict[str, Any], attention_window: list[int]) -> pl.LightningModule:
    """``MultiLabelClassifier`` built by a real ``LightningCLI`` (subclass mode, ``run=False``) from
    ``base_config``'s sizes, with ``attention_window``, labels and ``problem_type`` in the config."""
    from unittest import mock

    from pytorch_lightning.cli import LightningCLI

    sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    init_args = {k: base_config[k] for k in (*sizes, "max_position_embeddings", "type_vocab_size")}
    init_args |= {
        "attention_window": attention_window,
        "id2label": dict(enumerate(LABELS)),
        "label2id": {name: i for i, name in enumerate(LABELS)},
        "problem_type": "multi_label_classification",
    }
    with mock.patch.object(sys, "argv", sys.argv[:1]):  # args only, as a script with no command line
        cli = _cli(LightningCLI, init_args)
    return cli.model


def _cli(cls: Any, init_args: dict[str, Any]) -> Any:
    return cls(
        pl.LightningModule,
        subclass_mode_model=True,
        run=False,
        save_config_callback=None,
        seed_everything_default=0,
        args={
            "model": {
                "class_path": f"{__name__}.MultiLabelClassifier",
                "init_args": {"config": {"class_path": "transformers.LongformerConfig", "init_args": init_args}},
            },
            "trainer": {"logger": False, "enable_progress_bar": False, "enable_model_summary": False},
        },
    )
