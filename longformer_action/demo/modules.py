"""The demo's LightningModules: a tiny model with each task's head, in each layout a checkpoint may have."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


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

    from ..registry import tasks
    from ..registry.attention import global_attention_mask
    from ..registry.families import sep_token_id

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
            mask = global_attention_mask(self.convention, batch["input_ids"], sep_token_id(config))
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

    from ..registry import tasks
    from ..registry.attention import global_attention_mask
    from ..registry.families import family_of_config

    config = json.loads((base_folder / "config.json").read_text())
    family = family_of_config(config)
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
                "global_attention_mask": global_attention_mask(entry.global_attention, ids, sep),
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
