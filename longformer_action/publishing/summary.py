"""The Markdown summary of a run (the GitHub Actions step summary): the check's table and the files."""

from __future__ import annotations

from typing import Any

from ..progress import human_bytes
from .lines import check_table, custom_head_lines, fmt, generation_line, tokenizer_line


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
        f"| epoch / step | {fmt(src['epoch'])} / {fmt(src['global_step'])} |",
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
        kept = f", {m['kept']} kept beside the model" if m.get("kept") else ""
        lines.append(f"| keys | {m['mapped']} mapped, {m['dropped']} dropped{kept} ({m['layout']}) |")
    lines.append(f"| dtype | {fmt(report['dtype']['saved'])} |")
    if conv and "tokenizer" in conv:
        lines.append(f"| tokenizer | {tokenizer_line(conv['tokenizer'])} |")
    if conv and conv.get("generation") is not None:
        lines.append(f"| generation settings | {generation_line(conv['generation'])} |")
    total = sum(report["timings_seconds"].values())
    lines += [f"| time | {total:.1f} s |", ""]
    if check:
        lines += ["### Check", "", *check_table(check, report["dtype"]), ""]
        if check.get("smoke", {}).get("output"):
            lines += [f"Sample: *{check['smoke']['input']}* → `{check['smoke']['output']}`", ""]
        if check["failures"]:
            lines += ["Failures:", ""] + [f"- {f}" for f in check["failures"][:20]] + [""]
    lines += custom_head_lines((conv or {}).get("custom_head"), "###")
    if dropped:
        lines += [f"### Dropped keys ({len(dropped)})", "", "| key | reason |", "|---|---|"]
        lines += [f"| `{k['source']}` | {k['reason']} |" for k in dropped[:50]] + [""]
    if report["files"]:
        lines += ["### Files", "", "| file | size |", "|---|---|"]
        lines += [f"| `{f['name']}` | {human_bytes(f['bytes'])} |" for f in report["files"]] + [""]
    return "\n".join(lines)
