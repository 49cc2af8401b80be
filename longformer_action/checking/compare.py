"""Compare tensors and outputs: the folder's against the checkpoint's, per tensor and per output."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..registry.files import WEIGHTS_INDEX_NAME, WEIGHTS_NAME
from ..text import described
from ..writing.folder import target_dtype
from .result import OutputDiff


def compare_tensors(
    folder: Path, expected: Mapping[str, Any], dtype: str, *, files: list[Path] | None = None
) -> tuple[int, list[str]]:
    """Compare every tensor in the folder's weights with its source, cast as the conversion cast it.

    Exact: a cast is deterministic, so ``saved == source.to(dtype)`` bit for bit. ``files`` are the
    safetensors files to read (default: the model's weights files).

    Returns:
        The number of tensors compared, and one line per difference (including missing and extra).
    """
    import torch
    from safetensors import safe_open

    failures: list[str] = []
    seen: set[str] = set()
    for path in files if files is not None else weight_files(folder):
        if not path.is_file():
            failures.append(f"weights file {path.name} is missing")
            continue
        try:
            opened = safe_open(path, framework="pt")
        except Exception as exc:  # a cut or corrupt file is a failed check, not a crash
            failures.append(f"weights file {path.name} cannot be read ({described(exc)})")
            continue
        with opened as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                seen.add(name)
                if name not in expected:
                    failures.append(f"tensor '{name}' in {path.name} has no source in the checkpoint")
                    continue
                saved = f.get_tensor(name)
                source = expected[name]
                want = source.to(target_dtype(source.dtype, dtype)) if dtype != "keep" else source
                if saved.shape != want.shape:
                    failures.append(f"tensor '{name}' has shape {list(saved.shape)}, source {list(want.shape)}")
                elif saved.dtype != want.dtype:
                    failures.append(f"tensor '{name}' is {saved.dtype}, expected {want.dtype}")
                elif not torch.equal(saved, want):
                    diff = (saved.double() - want.double()).abs().max().item()
                    failures.append(f"tensor '{name}' differs from its source (max abs diff {diff:.3g})")
    for name in sorted(set(expected) - seen):
        failures.append(f"tensor '{name}' is missing from the folder")
    return len(seen), failures


def compare_outputs(reference: Mapping[str, Any], candidate: Any, atol: float) -> tuple[list[OutputDiff], list[str]]:
    """Compare outputs by name, then shape, then values (max absolute and relative difference).

    Non-finite values (NaN, inf) in the candidate are a failure whatever the reference holds.
    """
    import torch

    diffs: list[OutputDiff] = []
    failures: list[str] = []
    for name, ref in reference.items():
        got = getattr(candidate, name, None)
        if got is None:
            failures.append(f"output '{name}' is missing from the folder's model")
            continue
        if tuple(got.shape) != tuple(ref.shape):
            failures.append(f"output '{name}' has shape {list(got.shape)}, reference {list(ref.shape)}")
            continue
        if not bool(torch.isfinite(got).all()):
            failures.append(f"output '{name}' of the folder's model holds NaN or inf values")
            continue
        delta = (got.double() - ref.double()).abs()
        max_abs = float(delta.max()) if delta.numel() else 0.0
        max_rel = float((delta / ref.double().abs().clamp_min(1e-12)).max()) if delta.numel() else 0.0
        passed = max_abs <= atol
        diffs.append(OutputDiff(name, list(ref.shape), max_abs, max_rel, atol, passed))
        if not passed:
            failures.append(f"output '{name}' differs by {max_abs:.3g} (tolerance {atol:g})")
    return diffs, failures


def weight_files(folder: Path) -> list[Path]:
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    return [folder / WEIGHTS_NAME]
