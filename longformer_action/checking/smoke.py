"""The end-to-end sample: run the folder as a downstream job would, on one input, and decode the answer."""

from __future__ import annotations

from typing import Any

from ..registry.attention import global_attention_mask
from ..registry.families import sep_token_id
from ..registry.tasks import Task
from .inputs import SAMPLE_CHOICES, SAMPLE_CONTEXT, SAMPLE_MASKED, SAMPLE_QUESTION, SAMPLE_TEXT

#: Tokens the smoke test generates (greedy).
SMOKE_NEW_TOKENS = 8


def decode_answer(tokenizer: Any, input_ids: Any, start_logits: Any, end_logits: Any, *, max_answer: int = 30) -> str:
    """The best answer span in the context (after the question) of one sample, decoded."""
    ids = input_ids.tolist()
    sep = tokenizer.sep_token_id
    context_start = ids.index(sep) + 2 if sep in ids else 1
    context_end = len(ids) - 1 - ids[::-1].index(sep) if sep in ids else len(ids)
    best, span = float("-inf"), (context_start, context_start)
    starts, ends = start_logits.tolist(), end_logits.tolist()
    for s in range(context_start, context_end):
        for e in range(s, min(s + max_answer, context_end)):
            if starts[s] + ends[e] > best:
                best, span = starts[s] + ends[e], (s, e)
    return tokenizer.decode(ids[span[0] : span[1] + 1]).strip()


def smoke_test(task: Task, model: Any, tokenizer: Any, global_attention: str | None = None) -> dict[str, Any]:
    """Run the loaded folder end to end on a sample, as a downstream job would; a line for people.

    With ``transformers.pipeline(Task.pipeline)`` where transformers 5 has that pipeline; question
    answering decodes the best span; multiple choice picks the best of ``SAMPLE_CHOICES``; a
    ``seq2seq`` model generates exactly ``SMOKE_NEW_TOKENS`` tokens greedily (``generate()``) with the
    ``global_attention`` convention (default: the class's).

    Returns:
        ``{"input": ..., "output": ...}`` (strings), or ``{}`` without a tokenizer.
    """
    import torch

    if tokenizer is None:
        return {}
    if task.inputs == "seq2seq":
        if not hasattr(model, "generate"):
            return {}
        encoded = tokenizer(SAMPLE_TEXT, return_tensors="pt")
        mask = global_attention_mask(
            global_attention or task.global_attention, encoded["input_ids"], sep_token_id(model.config)
        )
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                global_attention_mask=mask,
                min_new_tokens=SMOKE_NEW_TOKENS,
                max_new_tokens=SMOKE_NEW_TOKENS,
                do_sample=False,
                num_beams=1,
            )
        ids = out[0].tolist()
        return {"input": SAMPLE_TEXT, "output": f"{tokenizer.decode(ids, skip_special_tokens=True)!r} (tokens {ids})"}
    if task.pipeline is not None:
        from transformers import pipeline

        runner = pipeline(task.pipeline, model=model, tokenizer=tokenizer, device="cpu")
        text = SAMPLE_MASKED.format(mask=tokenizer.mask_token) if task.inputs == "masked" else SAMPLE_TEXT
        multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
        # every label's score for a multi-label head (its pipeline's sigmoid); one string gives one list
        out = runner(text, top_k=None) if multi_label else runner(text)
        if multi_label:
            scores = out[0] if out and isinstance(out[0], list) else out
            above = [o for o in scores if o["score"] > 0.5]
            shown = ", ".join(f"{o['label']} {o['score']:.2f}" for o in above) or (
                f"no label above 0.5 (highest: {scores[0]['label']} {scores[0]['score']:.2f})"
            )
        elif task.inputs == "masked":
            shown = ", ".join(f"{o['token_str'].strip()!r} {o['score']:.2f}" for o in out[:3])
        elif task.pipeline == "feature-extraction":
            shown = f"features of shape {list(torch.tensor(out).shape)}"
        elif isinstance(out, list) and out and "entity" in out[0]:
            # the tokens as text (a byte-level BPE token's leading space is 'Ġ' in its raw form)
            shown = ", ".join(f"{_token_text(tokenizer, o['word'])!r}: {o['entity']}" for o in out[:4]) + (
                " ..." if len(out) > 4 else ""
            )
        else:
            shown = ", ".join(f"{o['label']} {o['score']:.2f}" for o in (out if isinstance(out, list) else [out]))
        return {"input": text, "output": shown}
    if task.inputs == "pair":
        encoded = tokenizer(SAMPLE_QUESTION, SAMPLE_CONTEXT, return_tensors="pt")
        with torch.inference_mode():
            out = model(**encoded)
        answer = decode_answer(tokenizer, encoded["input_ids"][0], out.start_logits[0], out.end_logits[0])
        return {"input": SAMPLE_QUESTION, "output": answer}
    encoded = tokenizer(
        [SAMPLE_QUESTION] * len(SAMPLE_CHOICES), list(SAMPLE_CHOICES), return_tensors="pt", padding=True
    )
    with torch.inference_mode():
        logits = model(**{k: v.unsqueeze(0) for k, v in encoded.items()}).logits[0]
    return {"input": SAMPLE_QUESTION, "output": SAMPLE_CHOICES[int(logits.argmax())]}


def _token_text(tokenizer: Any, token: str) -> str:
    return tokenizer.convert_tokens_to_string([token]).strip() or token
