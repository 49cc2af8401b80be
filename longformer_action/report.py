"""The conversion report (JSON), the model card (README.md in the folder), and the Markdown summary."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from .base_model import BaseModel
from .checkpoint import Checkpoint
from .convert import FileInfo
from .filesystem import writing
from .mapping import KeyMapping
from .progress import human_bytes
from .tasks import FAMILIES
from .tasks import get as get_task
from .verify import CheckResult

REPORT_NAME = "conversion-report.json"
#: The transformers versions the folder is written for (the compatibility test loads it in each).
SUPPORTED_TRANSFORMERS = "4.46 to 5.x"
CARD_NAME = "README.md"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_report(
    *,
    ckpt: Checkpoint,
    mapping: KeyMapping | None = None,
    base: BaseModel | None = None,
    dtype_requested: str = "keep",
    dtype_saved: str | None = None,
    files: list[FileInfo] | None = None,
    check: CheckResult | None = None,
    timings: dict[str, float] | None = None,
    command: str = "convert",
    error: str | None = None,
    conversion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather every fact of a conversion (or verification) as plain data.

    ``conversion`` holds the task's facts (task, class, labels, global attention, ties), as
    ``pipeline`` gathers them once the task is known.
    """
    report: dict[str, Any] = {
        "tool": {"name": "longformer-convert", "version": _version("longformer-convert-action"), "command": command},
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "status": "failed" if error or (check is not None and not check.passed) else "ok",
        "error": error,
        "source": {
            "path": os.fspath(ckpt.path),
            "sha256": ckpt.sha256,
            "bytes": ckpt.file_bytes,
            "weight_bytes": ckpt.weight_bytes(),
            "format": ckpt.file_format,
            "generation": ckpt.generation,
            "loader": ckpt.loader,
            "placeholders": ckpt.placeholders,
            "lightning_version": ckpt.lightning_version,
            "epoch": ckpt.epoch,
            "global_step": ckpt.global_step,
            "hyper_parameters": ckpt.hyper_parameters,
        },
        "base_model": None
        if base is None
        else {
            "spec": base.spec,
            "revision": base.revision,
            "commit": base.commit,
            "tokenizer_files": [p.name for p in base.tokenizer_files],
        },
        "task": (conversion or {}).get("task"),
        "architecture": (conversion or {}).get("architecture"),
        "conversion": conversion,
        "dtype": {"requested": dtype_requested, "saved": dtype_saved},
        "mapping": None,
        "files": [vars(f) for f in files or []],
        "check": check.to_dict() if check is not None else None,
        "timings_seconds": timings or {},
        "versions": {
            "python": platform.python_version(),
            **{
                p: _version(p) for p in ("torch", "transformers", "safetensors", "pytorch-lightning", "huggingface-hub")
            },
        },
    }
    if mapping is not None:
        keys = [{"source": s, "fate": "mapped", "target": t} for s, t in mapping.mapped.items()]
        keys += [{"source": s, "fate": "dropped", "reason": r} for s, r in mapping.dropped.items()]
        report["mapping"] = {
            "layout": mapping.layout,
            "wrapper_prefix": mapping.wrapper_prefix,
            "encoder_prefix": mapping.encoder_prefix,
            "head_prefix": mapping.head_prefix,
            "head": mapping.head,
            "combined": {t: list(s) for t, s in mapping.combined.items()},
            "mapped": len(mapping.mapped),
            "dropped": len(mapping.dropped),
            "keys": sorted(keys, key=lambda k: k["source"]),
        }
    return report


def write_json(path: Path, report: dict[str, Any], *, option: str = "--output") -> None:
    """Write the report as indented JSON (atomically: a reader never sees half a file).

    Args:
        path: where.
        report: the report.
        option: the option that chose ``path`` (``--output``, ``--report``), named by a failure's fix.

    Raises:
        OutputError: the write failed (see ``filesystem.write_error``); no temporary file is left.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"
    with writing(path, needs=len(text.encode()), option=option):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def _fmt(value: Any) -> str:
    return "n/a" if value is None else str(value)


def check_table(check: dict[str, Any]) -> list[str]:
    """Markdown rows: one per output with its differences and pass/fail."""
    rows = ["| output | shape | max abs diff | max rel diff | tolerance | result |", "|---|---|---|---|---|---|"]
    for o in check["outputs"]:
        mark = "pass" if o["passed"] else "**FAIL**"
        rows.append(
            f"| `{o['name']}` | {o['shape']} | {o['max_abs']:.3g} | {o['max_rel']:.3g} | {o['atol']:g} | {mark} |"
        )
    tensors = "pass" if not check["tensor_failures"] else f"**FAIL** ({len(check['tensor_failures'])})"
    rows.append(f"| every tensor equals its source | {check['tensors_compared']} tensors | | | exact | {tensors} |")
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


def _base_line(spec: str) -> str:
    if _hub_id(spec):
        return f"`{spec}`"
    return f"a local folder, `{Path(spec).name}`" if spec else "n/a"


def _hub_id(spec: str) -> str | None:
    if not spec or Path(spec).is_absolute() or spec.startswith(".") or "/" not in spec or Path(spec).exists():
        return None
    return spec


#: How the model card's snippet tokenizes, by the task's input kind (``Task.inputs``).
_TOKENIZE = {
    "pair": ['inputs = tokenizer("a question?", "a long context ...", return_tensors="pt")'],
    "text": ['inputs = tokenizer("a long document ...", return_tensors="pt")'],
    "masked": ['inputs = tokenizer(f"a long document with a {tokenizer.mask_token} ...", return_tensors="pt")'],
    "choices": [
        'inputs = tokenizer(["a question?"] * 2, ["choice A", "choice B"], return_tensors="pt", padding=True)',
        "inputs = {name: value.unsqueeze(0) for name, value in inputs.items()}  # (batch, choices, seq)",
    ],
    "seq2seq": ['inputs = tokenizer("a long document ...", return_tensors="pt")'],
}


#: The dtypes transformers 4.x does not keep unless asked: it loads float32 by default.
_HALF = ("float16", "bfloat16")


def _usage(conv: dict[str, Any], dtype: str | None = None) -> list[str]:
    """How a downstream job loads the folder, calls it as the module was trained, and reads the outputs.

    The lines run in every transformers version the README names (4.46 to 5.x); for a float16 or
    bfloat16 folder a comment says what 4.x needs to keep the dtype.
    """
    task = get_task(conv["task"], conv.get("family"))
    attention = conv["global_attention"]
    lines = ["```python"]
    if attention["call"]:
        lines.append("import torch")
    lines += [
        f"from transformers import {conv['auto_class']}, AutoTokenizer",
        "",
    ]
    if dtype in _HALF:
        lines.append(
            f"# saved in {dtype}: transformers 5 loads it so; transformers 4.x loads float32 unless you pass "
            'torch_dtype="auto"'
        )
    lines += [
        f'model = {conv["auto_class"]}.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        *_TOKENIZE[task.inputs],
    ]
    if attention["call"]:
        lines += [
            f"# trained with global attention `{attention['convention']}`, not the class default "
            f"`{attention['class_default']}`: pass it explicitly",
            attention["call"],
            f"outputs = {_call(conv)}(**inputs, global_attention_mask=global_attention_mask)",
        ]
    else:
        lines.append(f"outputs = {_call(conv)}(**inputs)")
    for crf in (conv.get("custom_head") or {}).get("crfs") or []:
        lines.append(
            f"# trained with a CRF ({crf['prefix']}* in {conv['custom_head']['file']}): decode outputs.logits with "
            "Viterbi over its transitions (below); argmax ignores them"
        )
    if task.read_outputs:
        lines.append(task.read_outputs)
    if task.pipeline and not attention["call"]:
        lines += [
            "",
            "from transformers import pipeline",
            f'run = pipeline("{task.pipeline}", model="path/to/this/folder")',
        ]
    lines.append("```")
    return lines


def model_card(report: dict[str, Any]) -> str:
    """The folder's README.md: metadata, how to load it, where it came from, and how it was checked.

    The metadata header is huggingface_hub's ``ModelCardData`` (``library_name``, ``pipeline_tag``,
    ``base_model``, ``tags``), as the Hub reads it.
    """
    from huggingface_hub import ModelCard, ModelCardData

    src, base, check, conv = report["source"], report["base_model"] or {}, report["check"], report["conversion"]
    base_id = base.get("spec", "")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=conv["pipeline_tag"],
        base_model=_hub_id(base_id),
        tags=[conv.get("family") or "longformer", conv["task"], "pytorch-lightning"],
    )
    attention = conv["global_attention"]
    lines = [
        f"# {_family_title(conv)} for {_title(conv)}",
        "",
        f"Converted from a PyTorch Lightning checkpoint by `longformer-convert` {_fmt(report['tool']['version'])}: "
        f"`{conv['architecture']}`, task `{conv['task']}`.",
        "",
        *_usage(conv, report["dtype"]["saved"]),
        "",
        f"The folder loads with the same outputs in transformers {SUPPORTED_TRANSFORMERS}.",
        "",
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| source checkpoint | `{Path(src['path']).name}` ({human_bytes(src['bytes'])}) |",
        f"| SHA-256 | `{src['sha256']}` |",
        f"| written by | {src['generation']}, Lightning {_fmt(src['lightning_version'])} |",
        f"| epoch / global step | {_fmt(src['epoch'])} / {_fmt(src['global_step'])} |",
        f"| base model (config, tokenizer) | {_base_line(base_id)} |",
        f"| task | `{conv['task']}` ({conv['architecture']}); head: {conv['head']} |",
        f"| global attention | `{attention['convention']}` (class default: `{attention['class_default']}`) |",
    ]
    if conv.get("num_labels"):
        labels = ", ".join(conv["id2label"][str(i)] for i in range(conv["num_labels"]))
        source = "" if conv["labels_from"].startswith("none") else f" (from {conv['labels_from']})"
        lines.append(f"| labels | {conv['num_labels']}: {labels}{source} |")
    if conv.get("problem_type"):
        source = conv.get("problem_type_from") or ""
        lines.append(f"| problem type | `{conv['problem_type']}`{f' (from {source})' if source else ''} |")
    lines.append(f"| tokenizer | {_tokenizer_line(conv.get('tokenizer'))} |")
    if conv.get("generation") is not None:
        lines.append(f"| generation settings | {_generation_line(conv['generation'])} |")
    if conv.get("untied"):
        lines.append(f"| tied weights | saved untied: {'; '.join(f'`{k}` {v}' for k, v in conv['untied'].items())} |")
    lines += [
        f"| dtype | {report['dtype']['saved']} (requested: {report['dtype']['requested']}) |",
        f"| keys | {report['mapping']['mapped']} mapped, {report['mapping']['dropped']} dropped |",
        "",
    ]
    dropped = [k for k in report["mapping"]["keys"] if k["fate"] == "dropped"]
    if dropped:
        lines += ["Dropped keys:", ""] + [f"- `{k['source']}`: {k['reason']}" for k in dropped] + [""]
    if get_task(conv["task"], conv.get("family")).pooler is None and conv.get("pooler") is False:
        lines += [
            "The checkpoint has no pooler: `from_pretrained` initialises `pooler.dense` and says so (the check "
            "allows exactly those keys to be missing). Use `last_hidden_state`; `pooler_output` means nothing here.",
            "",
        ]
    lines += _custom_head_lines(conv.get("custom_head"), "##")
    lines += ["## Check", ""]
    if check is None:
        lines += ["Not checked (converted with `--no-check`).", ""]
    else:
        verdict = "passed" if check["passed"] else "FAILED"
        lines += [
            f"The forward-pass check {verdict}: the folder, reloaded with `{conv['auto_class']}.from_pretrained`, "
            f"was compared with the checkpoint's own weights run as the LightningModule ran them (global attention "
            f"`{attention['convention']}`{_declared(attention)}), on inputs of shape {check['inputs'].get('shape')} "
            f"({check['inputs'].get('kind')}; lengths {check['inputs'].get('lengths')}).",
            "",
            *check_table(check),
            "",
        ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    return str(card)


def _custom_head_lines(kept: dict[str, Any] | None, level: str) -> list[str]:
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


def _tokenizer_line(facts: dict[str, Any] | None) -> str:
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


def _generation_line(facts: dict[str, Any]) -> str:
    """The model card's generation-settings row: where they came from and what they set."""
    shown = ", ".join(f"`{k}` {json.dumps(v)}" for k, v in facts["settings"].items()) or "transformers' defaults"
    return f"the base model's, from its `{facts['source']}`, in `generation_config.json`: {shown}"


def _declared(attention: dict[str, Any]) -> str:
    if attention["declared"] != "default":
        return ", as declared with --global-attention"
    return (
        ", the task's default, assumed: a checkpoint does not record it, so a module that passed another mask "
        "needs --global-attention"
    )


def _title(conv: dict[str, Any]) -> str:
    return get_task(conv["task"], conv.get("family")).title


def _call(conv: dict[str, Any]) -> str:
    # only a class with a language-model head generates (LEDModel, the encoder and decoder alone, does not)
    return "model.generate" if get_task(conv["task"], conv.get("family")).model_class().can_generate() else "model"


def _family_title(conv: dict[str, Any]) -> str:
    return FAMILIES[conv.get("family") or "longformer"].short


def summary_markdown(report: dict[str, Any]) -> str:
    """A Markdown summary for people: the check, the files, the time (for GitHub's step summary)."""
    src, check = report["source"], report["check"]
    status = "converted and checked" if report["status"] == "ok" and check else report["status"]
    if report["status"] == "ok" and not check:
        status = "converted (not checked)"
    lines = [f"## Longformer conversion: {status}", ""]
    dropped = [k for k in (report["mapping"] or {}).get("keys", []) if k["fate"] == "dropped"]
    if report.get("error"):
        lines += [f"> **Error:** {report['error']}", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| checkpoint | `{src['path']}` ({human_bytes(src['bytes'])}, {src['generation']}, read {src['loader']}) |",
        f"| SHA-256 | `{src['sha256']}` |",
        f"| epoch / step | {_fmt(src['epoch'])} / {_fmt(src['global_step'])} |",
    ]
    if report["base_model"]:
        lines.append(f"| base model | `{report['base_model']['spec']}` |")
    conv = report.get("conversion")
    if conv:
        labels = f", {conv['num_labels']} labels" if conv.get("num_labels") else ""
        lines.append(f"| task | `{conv['task']}` ({conv['architecture']}{labels}) |")
        attention = conv["global_attention"]
        lines.append(
            f"| global attention | `{attention['convention']}` (class default `{attention['class_default']}`) |"
        )
    if report["mapping"]:
        m = report["mapping"]
        lines.append(f"| keys | {m['mapped']} mapped, {m['dropped']} dropped ({m['layout']}) |")
    lines.append(f"| dtype | {_fmt(report['dtype']['saved'])} |")
    if conv and "tokenizer" in conv:
        lines.append(f"| tokenizer | {_tokenizer_line(conv['tokenizer'])} |")
    if conv and conv.get("generation") is not None:
        lines.append(f"| generation settings | {_generation_line(conv['generation'])} |")
    total = sum(report["timings_seconds"].values())
    lines += [f"| time | {total:.1f} s |", ""]
    if check:
        lines += ["### Check", "", *check_table(check), ""]
        if check.get("smoke", {}).get("output"):
            lines += [f"Sample: *{check['smoke']['input']}* → `{check['smoke']['output']}`", ""]
        if check["failures"]:
            lines += ["Failures:", ""] + [f"- {f}" for f in check["failures"][:20]] + [""]
    lines += _custom_head_lines((conv or {}).get("custom_head"), "###")
    if dropped:
        lines += [f"### Dropped keys ({len(dropped)})", "", "| key | reason |", "|---|---|"]
        lines += [f"| `{k['source']}` | {k['reason']} |" for k in dropped[:50]] + [""]
    if report["files"]:
        lines += ["### Files", "", "| file | size |", "|---|---|"]
        lines += [f"| `{f['name']}` | {human_bytes(f['bytes'])} |" for f in report["files"]] + [""]
    return "\n".join(lines)
