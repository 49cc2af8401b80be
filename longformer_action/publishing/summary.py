"""The Markdown summary of a run (the GitHub Actions step summary): the check's table, the files, and where a push
put them on the Hub."""

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
    if report.get("hub"):
        lines += _push_lines(report["hub"], "###")
    return "\n".join(lines)


def push_summary(result: dict[str, Any]) -> str:
    """The step summary of ``push``: the pull request or the commit, linked (``result``: ``commands.push.push``'s)."""
    return "\n".join(_push_lines(result["hub"], "##"))


def _push_lines(hub: dict[str, Any], level: str) -> list[str]:
    repo = f"[{hub['repo_id']}]({hub['repo_url']})"
    commit = f"[`{hub['commit_oid'][:12]}`]({hub['commit_url']})"
    if hub["pr_url"]:
        where = f"pull request [#{hub['pr_num']}]({hub['pr_url']}) against `{hub['revision']}`, commit {commit}"
    else:
        where = f"`{hub['revision']}`, commit {commit}"
    if hub["new_commit"]:
        done = f"{'Opened' if hub['pr_url'] else 'Committed to'} {where}."
    else:
        done = f"No new commit: the same files are already in {where}."
    lines = [f"{level} Hugging Face Hub: {repo}", "", done, ""]
    lines.append(
        f"{hub['files']} files, {human_bytes(hub['size'])}"
        + (", repository created" if hub["repo_created"] else "")
        + "."
    )
    if hub["removed"]:
        lines.append(f"Removed from the branch (not in the folder): {', '.join(f'`{p}`' for p in hub['removed'])}.")
    return [*lines, ""]
