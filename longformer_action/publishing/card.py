"""The model card (``README.md`` in the folder): what the model is, how to load and call it, and the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..progress import human_bytes
from ..registry.families import FAMILIES
from ..registry.tasks import get as get_task
from .lines import check_table, custom_head_lines, fmt, generation_line, tokenizer_line
from .model_index import eval_result
from .report import SUPPORTED_TRANSFORMERS


def _base_line(base: dict[str, Any]) -> str:
    spec = base.get("spec", "")
    if _hub_id(spec):
        at = [f"revision `{base['revision']}`"] if base.get("revision") else []
        at += (
            [f"commit `{base['commit']}`"] if base.get("commit") and base.get("commit") != base.get("revision") else []
        )
        return f"[`{spec}`](https://huggingface.co/{spec})" + (f" at {', '.join(at)}" if at else "")
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


#: The card's layout, a Jinja template rendered by huggingface_hub's ``ModelCard.from_template``.
TEMPLATE = Path(__file__).with_name("model_card.md")


def model_card(report: dict[str, Any]) -> str:
    """The folder's README.md: metadata, how to load it, where it came from, and how it was checked.

    The metadata header is huggingface_hub's ``ModelCardData`` (``library_name``, ``pipeline_tag``,
    ``base_model``, ``tags``), as the Hub reads it; the body is ``model_card.md`` (a Jinja template
    shipped with the package) rendered by ``ModelCard.from_template`` with the report's facts.
    """
    from huggingface_hub import ModelCard, ModelCardData

    src, base, check, conv = report["source"], report["base_model"] or {}, report["check"], report["conversion"]
    base_id = base.get("spec", "")
    monitored = src.get("model_checkpoints") or []
    results = [eval_result(m["monitor"], m["file_score"], task_type=conv["pipeline_tag"]) for m in monitored]
    results = [r for r in results if r is not None]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=conv["pipeline_tag"],
        base_model=_hub_id(base_id),
        tags=[conv.get("family") or "longformer", conv["task"], "pytorch-lightning"],
        model_name=Path(src["path"]).stem if results else None,
        eval_results=results or None,
    )
    attention = conv["global_attention"]
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        title=f"{_family_title(conv)} for {_title(conv)}",
        version=fmt(report["tool"]["version"]),
        conversion=conv,
        usage="\n".join(_usage(conv, report["dtype"]["saved"])),
        supported=SUPPORTED_TRANSFORMERS,
        source=src,
        source_name=Path(src["path"]).name,
        source_size=human_bytes(src["bytes"]),
        lightning=fmt(src["lightning_version"]),
        epoch=fmt(src["epoch"]),
        global_step=fmt(src["global_step"]),
        base_line=_base_line(base),
        attention=attention,
        rows="\n".join([*_monitored_rows(monitored), *_optional_rows(conv)]),
        dtype=report["dtype"],
        mapping=report["mapping"],
        notes="".join(f"{line}\n" for line in ["", *_notes(report)]),
        check="\n".join(_check_section(check, conv)),
    )
    return str(card)


def _optional_rows(conv: dict[str, Any]) -> list[str]:
    rows = []
    if conv.get("num_labels"):
        labels = ", ".join(conv["id2label"][str(i)] for i in range(conv["num_labels"]))
        source = "" if conv["labels_from"].startswith("none") else f" (from {conv['labels_from']})"
        rows.append(f"| labels | {conv['num_labels']}: {labels}{source} |")
    if conv.get("problem_type"):
        source = conv.get("problem_type_from") or ""
        rows.append(f"| problem type | `{conv['problem_type']}`{f' (from {source})' if source else ''} |")
    rows.append(f"| tokenizer | {tokenizer_line(conv.get('tokenizer'))} |")
    if conv.get("generation") is not None:
        rows.append(f"| generation settings | {generation_line(conv['generation'])} |")
    if conv.get("untied"):
        rows.append(f"| tied weights | saved untied: {'; '.join(f'`{k}` {v}' for k, v in conv['untied'].items())} |")
    return rows


def _monitored_rows(monitored: list[dict[str, Any]]) -> list[str]:
    # Lightning's ModelCheckpoint: the metric it monitored, the run's best score, and the score of these weights
    rows = []
    for m in monitored:
        if m["monitor"] is None and m["best_score"] is None:  # a ModelCheckpoint that kept the last file only
            continue
        metric = f"`{m['monitor']}`" if m["monitor"] else "not recorded (Lightning 0.x)"
        mode = f", {m['mode']}" if m["mode"] else ""
        best = fmt(_score(m["best_score"])) + (f" (`{m['best_model_path']}`)" if m["best_model_path"] else "")
        mine = _score(m["file_score"])
        this = f"{mine}" if mine is not None else "not recorded (no top-k save of the same step)"
        rows.append(f"| monitored metric ({m['callback']}) | {metric}{mode}: best {best}; these weights: {this} |")
    return rows


def _score(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


def _notes(report: dict[str, Any]) -> list[str]:
    # what follows the provenance table: dropped keys, a missing pooler, the custom head
    conv, lines = report["conversion"], []
    dropped = [k for k in report["mapping"]["keys"] if k["fate"] == "dropped"]
    if dropped:
        lines += ["Dropped keys:", ""] + [f"- `{k['source']}`: {k['reason']}" for k in dropped] + [""]
    if get_task(conv["task"], conv.get("family")).pooler is None and conv.get("pooler") is False:
        lines += [
            "The checkpoint has no pooler: `from_pretrained` initialises `pooler.dense` and says so (the check "
            "allows exactly those keys to be missing). Use `last_hidden_state`; `pooler_output` means nothing here.",
            "",
        ]
    return lines + custom_head_lines(conv.get("custom_head"), "##")


def _check_section(check: dict[str, Any] | None, conv: dict[str, Any]) -> list[str]:
    if check is None:
        return ["Not checked (converted with `--no-check`).", ""]
    verdict = "passed" if check["passed"] else "FAILED"
    attention = conv["global_attention"]
    return [
        f"The forward-pass check {verdict}: the folder, reloaded with `{conv['auto_class']}.from_pretrained`, "
        f"was compared with the checkpoint's own weights run as the LightningModule ran them (global attention "
        f"`{attention['convention']}`{_declared(attention)}), on inputs of shape {check['inputs'].get('shape')} "
        f"({check['inputs'].get('kind')}; lengths {check['inputs'].get('lengths')}).",
        "",
        *check_table(check),
        "",
    ]


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
