"""A text classifier fitted by a real ``Trainer`` with two ``ModelCheckpoint`` callbacks (``val_acc`` top-k with
``last.ckpt``, ``val_loss`` best only): the checkpoints the callback-state reader and the model card read.

The run is made once per test run (``tests/conftest.py``'s ``monitored_run``); what the callbacks held at its end
is returned as plain data beside the folders.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from longformer_action import demo

EPOCHS = 4


def _module(base_model: Path) -> Any:
    import pytorch_lightning as pl
    import torch.nn.functional as F
    from transformers import LongformerConfig, LongformerForSequenceClassification

    config = LongformerConfig.from_pretrained(base_model, num_labels=3)

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = LongformerForSequenceClassification(config)

        def forward(self, batch: dict[str, Any]) -> Any:
            return self.model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
            return F.cross_entropy(self(batch), batch["label"])

        def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
            logits = self(batch)
            self.log("val_loss", F.cross_entropy(logits, batch["label"]))
            self.log("val_acc", (logits.argmax(-1) == batch["label"]).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.parameters(), lr=5e-2)

    return Classifier()


def fit(base_model: Path, root: Path) -> dict[str, Any]:
    """Fit for ``EPOCHS`` epochs; the folders the callbacks wrote (``acc``, ``loss``) and their final state."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader

    batches = demo.batches(base_model, 2, task="text-classification", batch_size=8)
    by_acc = ModelCheckpoint(
        dirpath=root / "acc",
        monitor="val_acc",
        mode="max",
        save_top_k=-1,
        save_last=True,
        filename="{epoch}-{step}-{val_acc:.4f}",
    )
    by_loss = ModelCheckpoint(dirpath=root / "loss", monitor="val_loss", mode="min", save_top_k=1)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            max_epochs=EPOCHS,
            accelerator="cpu",
            devices=1,
            logger=False,
            callbacks=[by_acc, by_loss],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(
            _module(base_model),
            train_dataloaders=DataLoader(batches[:2], batch_size=None),
            # validated on a batch it trains on, at a high rate: the accuracy moves, and dips, between epochs
            val_dataloaders=DataLoader(batches[:1], batch_size=None),
        )
    return {
        "acc": root / "acc",
        "loss": root / "loss",
        "acc_best_score": by_acc.best_model_score.item(),
        "acc_best_name": Path(by_acc.best_model_path).name,
        "acc_top_k": {Path(p).name: s.item() for p, s in by_acc.best_k_models.items()},
        "loss_best_score": by_loss.best_model_score.item(),
    }


def named_score(path: Path) -> float:
    return float(re.search(r"val_acc=([0-9.]+)\.ckpt$", path.name)[1])  # type: ignore[index]


def below_best(run: dict[str, Any]) -> Path:
    """A file saved when its score was below the best so far (the rate is high enough for the accuracy to dip)."""
    saved = sorted(run["acc"].glob("epoch=*.ckpt"), key=step_of)
    dips = [p for i, p in enumerate(saved) if i and named_score(p) < max(named_score(q) for q in saved[:i])]
    assert dips, f"the run's accuracy never dipped: {[named_score(p) for p in saved]}"
    return dips[0]


def step_of(path: Path) -> int:
    return int(re.search(r"step=(\d+)", path.name)[1])  # type: ignore[index]
