"""The conversion report (``conversion-report.json``): what was converted, how, every key's fate, the
check and the files."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from ..checking.check import CheckResult
from ..filesystem import writing
from ..mapping.plan import Plan
from ..reading.base_model import BaseModel
from ..reading.checkpoint import Checkpoint
from ..registry.files import CUSTOM_HEAD_NAME
from ..writing.folder import FileInfo, Written

#: The transformers versions the folder is written for (the compatibility test loads it in each).
SUPPORTED_TRANSFORMERS = "4.46 to 5.x"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_report(
    *,
    command: str,
    ckpt: Checkpoint,
    base: BaseModel | None = None,
    plan: Plan | None = None,
    written: Written | None = None,
    files: list[FileInfo] | None = None,
    check: CheckResult | None = None,
    dtype_requested: str = "keep",
    dtype_saved: str | None = None,
    timings: dict[str, float] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Gather every fact of a conversion (or verification) as plain data, from what each stage produced.

    Args:
        command: ``convert`` or ``verify``.
        ckpt: what the read stage read.
        base: the resolved base model (``None`` when the run failed before).
        plan: the map stage's ``Plan``: the keys' fates and the decisions (``conversion``).
        written: what the save stage wrote: the tokenizer's and the generation settings' facts.
        files: the folder's files with their sizes and SHA-256.
        check: the check's result.
        dtype_requested, dtype_saved: ``--dtype`` and the dtype the weights were saved in.
        timings: seconds per stage.
        error: the one-line error of a failed run.
    """
    mapping = plan.mapping if plan is not None else None
    conversion = None
    if plan is not None:
        conversion = plan.facts.to_dict()
        if written is not None:
            conversion |= {"tokenizer": written.tokenizer, "generation": written.generation}
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
            "generation": ckpt.writer,
            "loader": ckpt.loader,
            "placeholders": ckpt.placeholders,
            "lightning_version": ckpt.lightning_version,
            "epoch": ckpt.epoch,
            "global_step": ckpt.global_step,
            "hyper_parameters": ckpt.hyper_parameters,
            "model_checkpoints": [state.to_dict() for state in ckpt.model_checkpoints],
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
        kept = set(mapping.custom_head)  # beside the model, in custom_head.safetensors: kept, not dropped
        keys = [{"source": s, "fate": "mapped", "target": t} for s, t in mapping.mapped.items()]
        keys += [
            {"source": s, "fate": "kept", "file": CUSTOM_HEAD_NAME, "reason": r} if s in kept
            else {"source": s, "fate": "dropped", "reason": r}
            for s, r in mapping.dropped.items()
        ]  # fmt: skip
        report["mapping"] = {
            "layout": mapping.layout,
            "wrapper_prefix": mapping.wrapper_prefix,
            "encoder_prefix": mapping.encoder_prefix,
            "head_prefix": mapping.head_prefix,
            "head": mapping.head,
            "combined": {t: list(s) for t, s in mapping.combined.items()},
            "mapped": len(mapping.mapped),
            "dropped": len(set(mapping.dropped) - kept),
            "kept": len(kept),
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
