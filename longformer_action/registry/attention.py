"""Global attention conventions: the masks a LightningModule may have passed, and the call that
reproduces each (for the model card)."""

from __future__ import annotations

from typing import Any


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
