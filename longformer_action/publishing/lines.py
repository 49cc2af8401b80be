"""Markdown lines both the model card and the step summary show: the check's table, kept tensors, files' facts."""

from __future__ import annotations

import json
from typing import Any


def fmt(value: Any) -> str:
    return "n/a" if value is None else str(value)


def check_table(check: dict[str, Any], dtype: dict[str, Any] | None = None) -> list[str]:
    """Markdown rows: one per output with its differences and pass/fail.

    ``dtype`` is the report's (``requested``, ``saved``): where ``--dtype`` cast the weights, the tensors
    equal their sources after that cast, and the row says so.
    """
    rows = ["| output | shape | max abs diff | max rel diff | tolerance | result |", "|---|---|---|---|---|---|"]
    for o in check["outputs"]:
        mark = "pass" if o["passed"] else "**FAIL**"
        rows.append(
            f"| `{o['name']}` | {o['shape']} | {o['max_abs']:.3g} | {o['max_rel']:.3g} | {o['atol']:g} | {mark} |"
        )
    tensors = "pass" if not check["tensor_failures"] else f"**FAIL** ({len(check['tensor_failures'])})"
    cast = f" after the cast to {dtype['saved']}" if dtype and dtype.get("requested") not in (None, "keep") else ""
    rows.append(
        f"| every tensor equals its source{cast} | {check['tensors_compared']} tensors | | | exact | {tensors} |"
    )
    named = check.get("checks") or []
    if named:
        rows += ["", "| check | files | result | compared |", "|---|---|---|---|"]
        rows += [
            f"| {c['name']} | {', '.join(f'`{f}`' for f in c['files']) or 'none'} | {_verdict(c['passed'])} | "
            f"{_cell(c['detail'] if c['passed'] is not False else '; '.join(c['failures'][:3]))} |"
            for c in named
        ]
    return rows


def _verdict(passed: bool | None) -> str:
    return "not run" if passed is None else "pass" if passed else "**FAIL**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def custom_head_lines(kept: dict[str, Any] | None, level: str) -> list[str]:
    """The tensors kept beside the model with their shapes, and what a CRF among them does (card and summary)."""
    if not kept:
        return []
    lines = [
        f"{level} Kept beside the model: `{kept['file']}`",
        "",
        "Trained tensors no transformers class computes, under their checkpoint names "
        f'(`safetensors.torch.load_file("path/to/this/folder/{kept["file"]}")`):',
        "",
        "| tensor | shape | dtype | kept by |",
        "|---|---|---|---|",
        *(f"| `{t['key']}` | {t['shape']} | {t['dtype']} | `{t['kept_by']}` |" for t in kept["tensors"]),
        "",
    ]
    for crf in kept.get("crfs") or []:
        p = crf["prefix"]
        lines += [
            f"`{p}transitions`, `{p}start_transitions` and `{p}end_transitions` are a CRF over {crf['tags']} tags: "
            "they decode the classifier's logits (`outputs.logits`, the emission scores) by Viterbi decoding, "
            f"the tag sequence with the best total score (`{p}start_transitions[first tag]` + the logits + "
            f"`{p}transitions[tag, next tag]` along the sequence + `{p}end_transitions[last tag]`), not by argmax "
            "over each token's logits, which ignores them.",
            "",
        ]
    return lines


def tokenizer_line(facts: dict[str, Any] | None) -> str:
    """The model card's tokenizer row: the class, the files, and the ``model_max_length`` it was given."""
    if not facts:
        return "none: the base model has no tokenizer files"
    length = facts["model_max_length"]
    files = ", ".join(f"`{f}`" for f in facts["files"])
    line = f"the base model's, `{facts['class']}`, saved by transformers ({files})"
    if length["capped"]:
        was = "unset" if length["base"] is None else length["base"]
        line += (
            f"; `model_max_length` capped from {was} to {length['saved']}, the positions the model can use "
            "(longer inputs would index past its position table)"
        )
    else:
        line += f"; `model_max_length` {length['saved']}"
    return line


def generation_line(facts: dict[str, Any]) -> str:
    """The model card's generation-settings row: where they came from and what they set."""
    shown = ", ".join(f"`{k}` {json.dumps(v)}" for k, v in facts["settings"].items()) or "transformers' defaults"
    return f"the base model's, from its `{facts['source']}`, in `generation_config.json`: {shown}"
