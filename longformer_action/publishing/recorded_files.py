"""Compare a folder's files with the SHA-256 its ``conversion-report.json`` records (``verify``'s and ``push``'s rule).

``SHA256SUMS`` proves only that the files are the ones it lists, and anyone can write it again (``sha256sum * >
SHA256SUMS``); the report records each file as the conversion wrote it, so an edit (a relabelled ``config.json``) shows
even then. ``config.json`` is named by the fields that differ from what the report records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..digests import file_sha256
from ..registry import tasks
from ..registry.files import REPORT_NAME


def recorded_digests(report: Mapping[str, Any]) -> dict[str, str]:
    """The report's files (``files``: every file of the folder but the report and ``SHA256SUMS``) by name: SHA-256."""
    return {
        str(listed.get("name", "")): str(listed.get("sha256", ""))
        for listed in report.get("files") or []
        if isinstance(listed, Mapping)
    }


def changed_files(
    folder: Path, report: Mapping[str, Any], config: Mapping[str, Any], task: tasks.Task | None
) -> list[tuple[str, str]]:
    """``(file, line)`` for each file the report lists that is missing or whose SHA-256 changed since the conversion.

    Args:
        folder: the converted folder.
        report: its ``conversion-report.json``, parsed.
        config: its ``config.json``, parsed (``{}`` when it does not parse): a changed ``config.json``'s line names
            the fields (``architectures``, ``id2label``, ``problem_type``) that differ from what the report records.
        task: the folder's task (``registry.tasks``), which says whether labels and ``problem_type`` are its fields;
            ``None`` names none but ``architectures``.

    Returns:
        One line per file, in the report's order: "config.json changed since the conversion (its SHA-256 differs from
        conversion-report.json): id2label is ... where conversion-report.json records ...".
    """
    lines = []
    for name, digest in recorded_digests(report).items():
        path = folder / name
        if not path.is_file():
            lines.append((path.name, f"{path.name}, listed in {REPORT_NAME}, is missing"))
        elif file_sha256(path) != digest:
            conversion = report.get("conversion") or {}
            fields = _config_fields(config, report, conversion, task) if path.name == "config.json" else []
            line = f"{path.name} changed since the conversion (its SHA-256 differs from {REPORT_NAME})"
            lines.append((path.name, line + (f": {'; '.join(fields)}" if fields else "")))
    return lines


def _config_fields(
    config: Mapping[str, Any], report: Mapping[str, Any], conversion: Mapping[str, Any], task: tasks.Task | None
) -> list[str]:
    # the fields the report's conversion section records too: the ones an edit of config.json can be named by
    architecture = task.architecture if task is not None else report.get("architecture")
    recorded: dict[str, Any] = {"architectures": [architecture]} if architecture else {}
    if task is not None and task.labels and conversion.get("id2label") is not None:
        recorded["id2label"] = conversion["id2label"]
    if task is not None and task.problem_type and "problem_type" in conversion:
        recorded["problem_type"] = conversion["problem_type"]
    return [
        f"{name} is {json.dumps(config.get(name))} where {REPORT_NAME} records {json.dumps(want)}"
        for name, want in recorded.items()
        if config.get(name) != want
    ]
