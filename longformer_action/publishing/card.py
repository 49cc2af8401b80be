"""The model card (``README.md`` in the folder): what the model is, how to load and call it, and the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..progress import human_bytes
from ..reading.base_model import HPARAMS_BASE
from ..reading.formats import describe_writer
from ..registry.families import FAMILIES
from ..registry.tasks import get as get_task
from .lines import check_table, custom_head_lines, fmt, generation_line, tokenizer_line
from .model_index import eval_result
from .report import SUPPORTED_TRANSFORMERS
from .usage import usage


def _base_line(base: dict[str, Any]) -> str:
    spec = base.get("spec", "")
    if spec == HPARAMS_BASE:
        return "none: the config came from the checkpoint's hyper-parameters (`--base-model hparams`); no tokenizer"
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
        usage="\n".join(usage(conv, report["dtype"]["saved"], base_id)),
        supported=SUPPORTED_TRANSFORMERS,
        source=src,
        source_name=Path(src["path"]).name,
        source_size=human_bytes(src["bytes"]),
        written_by=describe_writer(src["generation"], src["lightning_version"]),
        epoch=fmt(src["epoch"]),
        global_step=fmt(src["global_step"]),
        base_line=_base_line(base),
        attention=attention,
        rows="\n".join([*_monitored_rows(monitored), *_optional_rows(conv, base_id)]),
        dtype=report["dtype"],
        mapping=report["mapping"],
        notes="".join(f"{line}\n" for line in ["", *_notes(report)]),
        check="\n".join(_check_section(check, conv, report["dtype"])),
    )
    return str(card)


def _optional_rows(conv: dict[str, Any], base_spec: str) -> list[str]:
    rows = []
    if conv.get("num_labels"):
        labels = ", ".join(conv["id2label"][str(i)] for i in range(conv["num_labels"]))
        source = "" if conv["labels_from"].startswith("none") else f" (from {conv['labels_from']})"
        rows.append(f"| labels | {conv['num_labels']}: {labels}{source} |")
    if conv.get("problem_type"):
        source = conv.get("problem_type_from") or ""
        rows.append(f"| problem type | `{conv['problem_type']}`{f' (from {source})' if source else ''} |")
    window = conv.get("one_sided_window")
    if window:
        rows.append(
            f"| attention window | `{window['config']}` in `config.json`; {window['where']} is {window['recorded']}, "
            "read as the one-sided window (half the two-sided one, as allenai's scripts record it) |"
        )
    tokenizer = tokenizer_line(conv.get("tokenizer"))
    if not conv.get("tokenizer") and base_spec == HPARAMS_BASE:
        tokenizer = "none: `--base-model hparams` gives the config alone; use the tokenizer the model was trained with"
    rows.append(f"| tokenizer | {tokenizer} |")
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


def _check_section(check: dict[str, Any] | None, conv: dict[str, Any], dtype: dict[str, Any]) -> list[str]:
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
        *check_table(check, dtype),
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


def _family_title(conv: dict[str, Any]) -> str:
    return FAMILIES[conv.get("family") or "longformer"].short
