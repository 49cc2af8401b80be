"""The check's inputs: sample texts and the token ids each task's class takes (pairs, texts, masked
texts, choices, seq2seq), long enough for the sliding window and the global attention to run."""

from __future__ import annotations

from typing import Any

from ..registry.families import config_value, family_of_config
from ..registry.tasks import Task

SAMPLE_QUESTION = "Where is the Eiffel Tower?"


SAMPLE_CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower."
)


SAMPLE_CHOICES = ("In Paris, on the Champ de Mars.", "In Rome, beside the Colosseum.", "In Berlin, near the river.")


#: The smoke test's input per input kind (``Task.inputs``).
SAMPLE_TEXT = "The Eiffel Tower stands in Paris, on the Champ de Mars, and Gustave Eiffel's company built it."


SAMPLE_MASKED = "The Eiffel Tower stands in {mask}, on the Champ de Mars."


#: The target of the ``seq2seq`` inputs (teacher forcing: the decoder reads it shifted right).
SAMPLE_SUMMARY = "The Eiffel Tower is in Paris."


def attention_window(config: Any) -> int:
    """The widest (two-sided) attention window over the layers."""
    window = config_value(config, "attention_window")
    return int(max(window)) if isinstance(window, (list, tuple)) else int(window)


def _token_pool(config: Any, tokenizer: Any, text: str, generator: Any, count: int) -> list[int]:
    import torch

    if tokenizer is not None:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    roles = ("sep_token_id", "bos_token_id", "pad_token_id", "eos_token_id")
    specials = {config_value(config, role) for role in roles}
    pool = [i for i in range(min(config_value(config, "vocab_size"), 1000)) if i not in specials]
    return [pool[i] for i in torch.randint(len(pool), (count,), generator=generator).tolist()]


def _fill(tokens: list[int], room: int) -> list[int]:
    return (tokens * (room // max(len(tokens), 1) + 1))[:room]


def _pad(rows: list[list[int]], pad: int, width: int | None = None) -> tuple[Any, Any]:
    import torch

    width = width or max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def make_inputs(task: Task, config: Any, tokenizer: Any = None, *, seed: int = 0) -> dict[str, Any]:
    """The check's inputs for ``task``: a batch of two samples of different lengths, padded.

    Both are longer than the one-sided attention window, so the sliding window decides what each
    token sees. By ``Task.inputs``: ``pair`` is ``<s> question </s></s> context </s>`` (exactly three
    separators, as ``LongformerForQuestionAnswering`` requires); ``text`` is ``<s> text </s>``;
    ``masked`` is a text with every fifth token replaced by ``<mask>`` (when the tokenizer has one);
    ``choices`` gives ``input_ids`` of shape ``(2, 3, seq)``: a question paired with three choices;
    ``seq2seq`` is ``text`` plus teacher-forced decoder inputs: ``decoder_input_ids`` are the target
    ``SAMPLE_SUMMARY </s>`` shifted right after ``decoder_start_token_id`` (two target lengths, padded).
    Without a tokenizer, token ids come from a seeded generator.

    Returns:
        ``input_ids`` and ``attention_mask``, int64 tensors of shape ``(2, seq)`` (``(2, 3, seq)``
        for ``choices``); for ``seq2seq`` also ``decoder_input_ids`` and ``decoder_attention_mask``
        ``(2, target)``.
    """
    import torch

    family = family_of_config(config)
    window = attention_window(config)
    max_len = family.max_source_tokens(config)
    # Longformer pads to a multiple of ``window``, so this costs one window of compute per sample
    one_sided = window // 2
    target = min(max(one_sided + one_sided // 2 + 8, 48), max_len)
    sep, cls, pad = (family.value(config, role) for role in ("sep_token_id", "bos_token_id", "pad_token_id"))
    generator = torch.Generator().manual_seed(seed)
    lengths = (target, max(target * 2 // 3, one_sided + 4))
    question = _token_pool(config, tokenizer, SAMPLE_QUESTION, generator, 6)
    if task.inputs == "choices":
        samples = []
        for length in lengths:
            rows = []
            for choice in SAMPLE_CHOICES:
                c = _token_pool(config, tokenizer, choice + " " + SAMPLE_CONTEXT, generator, length)
                rows.append([cls, *question, sep, sep, *_fill(c, length - len(question) - 4), sep])
            samples.append(rows)
        width = max(len(r) for rows in samples for r in rows)
        padded = [_pad(rows, pad, width) for rows in samples]
        return {"input_ids": torch.stack([p[0] for p in padded]), "attention_mask": torch.stack([p[1] for p in padded])}
    rows: list[list[int]] = []
    for length in lengths:
        if task.inputs == "pair":
            c = _token_pool(config, tokenizer, SAMPLE_CONTEXT, generator, length)
            rows.append([cls, *question, sep, sep, *_fill(c, length - len(question) - 4), sep])
        else:
            t = _fill(_token_pool(config, tokenizer, SAMPLE_TEXT + " " + SAMPLE_CONTEXT, generator, length), length - 2)
            mask_id = getattr(tokenizer, "mask_token_id", None)
            if task.inputs == "masked" and mask_id is not None:
                t = [mask_id if i % 5 == 2 else tok for i, tok in enumerate(t)]
            rows.append([cls, *t, sep])
    input_ids, attention_mask = _pad(rows, pad)
    if task.inputs != "seq2seq":
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    room = max(min(12, family.value(config, "max_target_positions") - 1), 3)
    summary = _token_pool(config, tokenizer, SAMPLE_SUMMARY, generator, room)
    eos, start = family.value(config, "eos_token_id"), family.value(config, "decoder_start_token_id")
    targets = [[*_fill(summary, n - 1), eos] for n in (room, max(room * 2 // 3, 2))]
    shifted = [[start, *t[:-1]] for t in targets]
    decoder_input_ids, decoder_attention_mask = _pad(shifted, pad)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": decoder_attention_mask,
    }


#: Accents, a dash, CJK characters and a full stop after a space (what ``clean_up_tokenization_spaces`` decides).
SAMPLE_UNICODE = "Gustave Eiffel (1832–1923) naquit à Dijon ; 埃菲尔铁塔位于巴黎 . Où est-elle ?"
