"""The embedded default: a tiny Longformer (or LED), a tokenizer, and a real Lightning training run, offline.

Used by ``longformer-convert demo`` and by the tests, which need real checkpoints written by a
real ``Trainer``. Nothing here touches the network.
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from collections.abc import Callable
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


def _lightning(package: str) -> Any:
    return importlib.import_module("lightning.pytorch" if package == "lightning" else "pytorch_lightning")


#: Layouts of ``make_module``: where the encoder and the head live in the LightningModule.
LAYOUTS = ("wrapped", "sibling", "origin", "split", "bare", "crf")


def make_crf(num_tags: int) -> Any:
    """A linear-chain conditional random field over ``num_tags`` tags, with pytorch-crf's parameter names.

    ``transitions`` ``(n, n)`` scores tag ``j`` following tag ``i``; ``start_transitions`` and
    ``end_transitions`` ``(n,)`` score the first and last tags. ``nll(emissions, tags)`` is the training
    loss (the negative log-likelihood of the gold tags, mean over the batch); ``decode(emissions)`` is
    Viterbi decoding, the best tag sequence ``(batch, seq)``, which argmax over each token does not give.
    """
    import torch
    from torch import nn

    class CRF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
            self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
            self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))

        def nll(self, emissions: Any, tags: Any) -> Any:
            picked = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (batch, seq)
            gold = self.start_transitions[tags[:, 0]] + picked.sum(1) + self.end_transitions[tags[:, -1]]
            gold = gold + self.transitions[tags[:, :-1], tags[:, 1:]].sum(1)
            alpha = self.start_transitions + emissions[:, 0]
            for i in range(1, emissions.shape[1]):
                alpha = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, i].unsqueeze(1), dim=1)
            return (torch.logsumexp(alpha + self.end_transitions, dim=1) - gold).mean()

        def decode(self, emissions: Any) -> Any:
            score, history = self.start_transitions + emissions[:, 0], []
            for i in range(1, emissions.shape[1]):
                score, best = (score.unsqueeze(2) + self.transitions + emissions[:, i].unsqueeze(1)).max(dim=1)
                history.append(best)
            last = (score + self.end_transitions).argmax(dim=1)
            path = [last]
            for best in reversed(history):
                last = best.gather(1, last.unsqueeze(1)).squeeze(1)
                path.append(last)
            return torch.stack(path[::-1], dim=1)

    return CRF()


def _qa_split(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from torch import nn

    mods = {"start_head": nn.Linear(config.hidden_size, 1), "end_head": nn.Linear(config.hidden_size, 1)}
    return mods, lambda m, out, n: {
        "start_logits": m.start_head(out.last_hidden_state).squeeze(-1),
        "end_logits": m.end_head(out.last_hidden_state).squeeze(-1),
    }


def _qa(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from torch import nn

    def forward(m: Any, out: Any, n: Any) -> dict[str, Any]:
        start, end = m.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        return {"start_logits": start.squeeze(-1), "end_logits": end.squeeze(-1)}

    return {"qa_outputs": nn.Linear(config.hidden_size, 2)}, forward


def _classification(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from transformers.models.longformer.modeling_longformer import LongformerClassificationHead

    return {"head": LongformerClassificationHead(config)}, lambda m, out, n: {"logits": m.head(out.last_hidden_state)}


def _tagger(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from torch import nn

    mods = {"tagger": nn.Linear(config.hidden_size, config.num_labels)}
    return mods, lambda m, out, n: {"logits": m.tagger(out.last_hidden_state)}


def _scorer(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from torch import nn

    mods = {"scorer": nn.Linear(config.hidden_size, 1)}
    return mods, lambda m, out, n: {"logits": m.scorer(out.pooler_output).view(-1, n)}


def _lm_head(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    from transformers.models.longformer.modeling_longformer import LongformerLMHead

    return {"lm_head": LongformerLMHead(config)}, lambda m, out, n: {"logits": m.lm_head(out.last_hidden_state)}


def _no_head(config: Any) -> tuple[dict[str, Any], Callable[..., dict[str, Any]]]:
    return {}, lambda m, out, n: {"last_hidden_state": out.last_hidden_state}


#: The demo's heads as sibling attributes of the encoder, by (task, layout) or by task: name to module,
#: and the forward that applies them to the encoder's outputs (``m`` the module, ``n`` the choices).
SIBLING_HEADS: dict[Any, Callable[[Any], tuple[dict[str, Any], Callable[..., dict[str, Any]]]]] = {
    ("question-answering", "split"): _qa_split,
    "question-answering": _qa,
    "text-classification": _classification,
    "token-classification": _tagger,
    "multiple-choice": _scorer,
    "fill-mask": _lm_head,
    "feature-extraction": _no_head,
}


def _tie_as_transformers_does(module: Any, encoder: Any) -> None:
    # LongformerForMaskedLM's _tied_weights_keys: the decoder is the word embeddings, its bias lm_head.bias
    head = getattr(module, "lm_head", None)
    if head is not None:
        head.decoder.weight = encoder.embeddings.word_embeddings.weight
        head.decoder.bias = head.bias


def make_module(
    base_folder: Path,
    *,
    task: str = "question-answering",
    layout: str = "wrapped",
    package: str = "pytorch_lightning",
    num_labels: int = 3,
    **hparams: Any,
) -> Any:
    """A LightningModule around a tiny Longformer for ``task``, initialised with a fixed seed.

    Args:
        base_folder: a folder from ``make_base_model``.
        task: a task of the registry (``longformer_action.tasks``).
        layout: ``wrapped`` (``self.model`` is the task's transformers class); ``sibling`` or
            ``origin`` (``self.model`` / ``self.encoder`` is a ``LongformerModel`` and the head a
            sibling attribute under its own name, as allenai's TriviaQA code and many public modules
            have it; ``origin`` is question answering's ``model`` + ``qa_outputs``); ``split``
            (question answering with two Linear(h, 1) heads for start and end); ``bare``
            (text2text-generation: the class's own attributes ``led``, ``lm_head`` (tied to
            ``led.shared``) and ``final_logits_bias`` on the LightningModule itself, so the keys
            carry no prefix); ``crf`` (token-classification: ``self.model`` is the transformers
            class and ``self.crf`` a CRF over its logits (``make_crf``), trained by the CRF's
            negative log-likelihood).
        package: ``pytorch_lightning`` or ``lightning``.
        num_labels: outputs of a classification head.
        hparams: extra hyper-parameters to save in the checkpoint; ``global_attention`` (a
            convention of ``tasks.global_attention_mask``, default the class's) is the one the
            module trains with.
    """
    import torch
    from torch import nn
    from transformers import LEDModel, LongformerModel

    from . import tasks

    pl = _lightning(package)
    entry = tasks.get(task)
    family = tasks.FAMILIES[entry.family]
    config = family.config_cls().from_pretrained(base_folder, num_labels=num_labels if entry.labels else 2)
    decoder_keys = ("decoder_input_ids", "decoder_attention_mask")

    class TinyModule(pl.LightningModule):
        def __init__(self, lr: float = 1e-3, global_attention: str = "default", **extra: Any) -> None:
            super().__init__()
            self.save_hyperparameters()
            torch.manual_seed(0)
            self.convention = tasks.resolve_global_attention(entry, global_attention)
            if layout in ("wrapped", "crf"):
                self.model = entry.model_class()(config)
                self._head = None
                if layout == "crf":
                    self.crf = make_crf(config.num_labels)
            elif layout == "bare":  # LED's own attributes, as LEDForConditionalGeneration has them
                self.led = LEDModel(config)
                hidden, vocab = family.value(config, "hidden_size"), family.value(config, "vocab_size")
                self.lm_head = nn.Linear(hidden, vocab, bias=False)
                self.lm_head.weight = self.led.shared.weight
                self.register_buffer("final_logits_bias", torch.zeros(1, vocab))
                self._head = None
            else:
                encoder = LongformerModel(config, add_pooling_layer=entry.pooler is not False or layout == "origin")
                setattr(self, "model" if layout in ("origin", "split") else "encoder", encoder)
                mods, self._head = SIBLING_HEADS.get((task, layout), SIBLING_HEADS[task])(config)
                for name, module in mods.items():
                    setattr(self, name, module)
                _tie_as_transformers_does(self, encoder)

        def forward(
            self, input_ids: Any, attention_mask: Any, global_attention_mask: Any, **decoder: Any
        ) -> dict[str, Any]:
            if layout == "bare":
                out = self.led(
                    input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask, **decoder
                )
                return {"logits": self.lm_head(out.last_hidden_state) + self.final_logits_bias}
            if self._head is None:
                out = self.model(
                    input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask, **decoder
                )
                return {n: getattr(out, n) for n in entry.outputs if getattr(out, n, None) is not None}
            choices = input_ids.shape[1] if input_ids.dim() == 3 else None
            flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
            encoder = self.model if hasattr(self, "model") else self.encoder
            out = encoder(
                flat(input_ids), attention_mask=flat(attention_mask), global_attention_mask=flat(global_attention_mask)
            )
            return self._head(self, out, choices)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            mask = tasks.global_attention_mask(self.convention, batch["input_ids"], tasks.sep_token_id(config))
            decoder = {k: batch[k] for k in decoder_keys if k in batch}
            out = self(batch["input_ids"], batch["attention_mask"], mask, **decoder)
            if layout == "crf":
                return self.crf.nll(out["logits"], batch["tags"])
            return LOSSES[task](out, batch)

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    return TinyModule(**hparams)


def _cross_entropy(logits: Any, target: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


#: A training objective per task, on the batches of ``batches``.
LOSSES: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "question-answering": lambda out, b: (
        (_cross_entropy(out["start_logits"], b["start"]) + _cross_entropy(out["end_logits"], b["end"])) / 2
    ),
    "text-classification": lambda out, b: _cross_entropy(out["logits"], b["label"]),
    "token-classification": lambda out, b: _cross_entropy(out["logits"], b["tags"]),
    "multiple-choice": lambda out, b: _cross_entropy(out["logits"], b["label"]),
    "fill-mask": lambda out, b: _cross_entropy(out["logits"], b["input_ids"]),
    "feature-extraction": lambda out, b: out["last_hidden_state"].pow(2).mean(),
    "text2text-generation": lambda out, b: _cross_entropy(out["logits"], b["labels"]),
}


def batches(
    base_folder: Path,
    count: int,
    *,
    task: str = "question-answering",
    batch_size: int = 2,
    length: int = 48,
    num_labels: int = 3,
    choices: int = 3,
) -> list[dict[str, Any]]:
    """Random batches that fit ``task``: ``<s> q </s></s> c </s>`` ids (three separators, so every global
    attention convention applies), masks (global attention: the class's default), and targets for
    every task's objective (``text2text-generation``: ``labels`` and the teacher-forced
    ``decoder_input_ids``, ``labels`` shifted right)."""
    import torch

    from . import tasks

    config = json.loads((base_folder / "config.json").read_text())
    family = tasks.family_of_config(config)
    vocab, bos, sep, eos = (
        family.value(config, r) for r in ("vocab_size", "bos_token_id", "sep_token_id", "eos_token_id")
    )
    generator = torch.Generator().manual_seed(1)
    entry = tasks.get(task)
    shape = (batch_size, choices, length) if entry.inputs == "choices" else (batch_size, length)
    made = []
    for _ in range(count):
        ids = torch.randint(5, vocab, shape, generator=generator)
        ids[..., 0] = bos
        ids[..., 7] = ids[..., 8] = ids[..., -1] = sep
        made.append(
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "global_attention_mask": tasks.global_attention_mask(entry.global_attention, ids, sep),
                "start": torch.randint(10, length - 4, (batch_size,), generator=generator),
                "end": torch.randint(10, length - 4, (batch_size,), generator=generator),
                "label": torch.randint(
                    0, choices if entry.inputs == "choices" else num_labels, (batch_size,), generator=generator
                ),
                "tags": torch.randint(0, num_labels, (batch_size, length), generator=generator),
            }
        )
        if entry.inputs == "seq2seq":
            labels = torch.randint(5, vocab, (batch_size, 10), generator=generator)
            labels[:, -1] = eos
            start = torch.full((batch_size, 1), family.value(config, "decoder_start_token_id"))
            made[-1]["labels"] = labels
            made[-1]["decoder_input_ids"] = torch.cat([start, labels[:, :-1]], dim=1)
    return made


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

    from . import tasks

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
        mask = tasks.global_attention_mask(convention, batch["input_ids"], tasks.sep_token_id(config))
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

    from . import tasks

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
