"""Train the demo's modules for a few steps and save real checkpoints: Lightning's Trainer, Fabric, and
transformers' Trainer."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from .modules import LOSSES, _lightning, batches, make_module


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
    task: str = "question-answering",
    layout: str = "wrapped",
    package: str = "pytorch_lightning",
    steps: int = 3,
    num_labels: int = 3,
    **hparams: Any,
) -> Path:
    """Train a tiny model for ``task`` for a few steps with a real ``Trainer`` (AdamW) and save its checkpoint.

    Returns:
        ``path``, a Lightning checkpoint with optimizer state.
    """
    module = make_module(base_folder, task=task, layout=layout, package=package, num_labels=num_labels, **hparams)
    made = batches(base_folder, steps, task=task, num_labels=num_labels)
    return fit_and_save(module, made, path, package=package)


def train_fabric_checkpoint(
    base_folder: Path,
    path: Path,
    *,
    task: str = "token-classification",
    steps: int = 3,
    num_labels: int = 3,
    hparams: dict[str, Any] | None = None,
) -> Path:
    """Train the task's transformers class for a few steps with Lightning Fabric and save it with ``Fabric.save``.

    As Fabric's documentation writes it: ``fabric.save(path, {"model": model, "optimizer": optimizer,
    "iteration": n, "hparams": {...}})``; Fabric stores the module's and the optimizer's state dicts, so
    the file holds the model's keys (``longformer.*`` and the head's) under ``model``.

    Returns:
        ``path``.
    """
    import torch
    from lightning.fabric import Fabric

    from ..registry import tasks
    from ..registry.attention import global_attention_mask
    from ..registry.families import sep_token_id

    entry = tasks.get(task)
    family = tasks.FAMILIES[entry.family]
    config = family.config_cls().from_pretrained(base_folder, num_labels=num_labels if entry.labels else 2)
    for name in ("lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    fabric = Fabric(accelerator="cpu", devices=1)
    torch.manual_seed(0)
    model = entry.model_class()(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = fabric.setup(model, optimizer)
    model.train()
    convention = tasks.resolve_global_attention(entry, "default")
    for batch in batches(base_folder, steps, task=task, num_labels=num_labels):
        mask = global_attention_mask(convention, batch["input_ids"], sep_token_id(config))
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], global_attention_mask=mask)
        loss = LOSSES[task]({n: getattr(out, n) for n in entry.outputs if getattr(out, n, None) is not None}, batch)
        fabric.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    path.parent.mkdir(parents=True, exist_ok=True)
    fabric.save(path, {"model": model, "optimizer": optimizer, "iteration": steps, "hparams": dict(hparams or {})})
    return path


def train_with_transformers_trainer(
    base_folder: Path,
    output_dir: Path,
    *,
    task: str = "text-classification",
    steps: int = 2,
    labels: tuple[str, ...] = ("NEG", "NEU", "POS"),
) -> Path:
    """Train the task's transformers class for a few steps with ``transformers.Trainer`` (needs ``accelerate``).

    The Trainer saves ``output_dir/checkpoint-<steps>/`` as it does in any fine-tuning script:
    ``config.json``, ``model.safetensors``, ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``,
    ``trainer_state.json`` and ``training_args.bin``.

    Returns:
        The ``checkpoint-<steps>`` folder.
    """
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from ..registry import tasks

    entry = tasks.get(task)
    family = tasks.FAMILIES[entry.family]
    names = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    config = family.config_cls().from_pretrained(base_folder, **(names if entry.labels else {}))
    torch.manual_seed(0)
    model = entry.model_class()(config)
    targets = {"text-classification": "label", "token-classification": "tags"}
    rows = [
        {
            "input_ids": batch["input_ids"][i],
            "attention_mask": batch["attention_mask"][i],
            "labels": batch[targets.get(task, "label")][i],
        }
        for batch in batches(base_folder, steps, task=task, num_labels=len(labels))
        for i in range(batch["input_ids"].shape[0])
    ]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        save_steps=steps,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        seed=0,
    )
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(model=model, args=args, train_dataset=rows).train()
    return output_dir / f"checkpoint-{steps}"
