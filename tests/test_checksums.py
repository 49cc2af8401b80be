"""SHA256SUMS in the output folder: written last, covers every other file, and `sha256sum -c` accepts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from longformer_action.errors import OutputError
from longformer_action.registry.files import CHECKSUMS_NAME
from longformer_action.writing.checksums import write_checksums


def _sha256sum() -> str:
    found = shutil.which("sha256sum")
    if found:
        return found
    reason = "sha256sum (GNU coreutils) is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def converted(checkpoints, base_model, tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from longformer_action.cli import main

    out = tmp_path_factory.mktemp("checksums") / "model"
    args = ["convert", "--checkpoint", checkpoints["wrapped-pytorch_lightning"], "--output", out]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--base-model", base_model]])
    assert result.exit_code == 0, result.output
    return out


def test_a_converted_folder_passes_sha256sum_check(converted):
    result = subprocess.run(
        [_sha256sum(), "--check", "--strict", CHECKSUMS_NAME], cwd=converted, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == len(result.stdout.splitlines())


def test_it_lists_every_other_file_card_and_report_included(converted):
    listed = [line.split("  ", 1)[1] for line in (converted / CHECKSUMS_NAME).read_text().splitlines()]
    others = sorted(p.name for p in converted.iterdir() if p.name != CHECKSUMS_NAME)
    assert listed == others
    assert {"config.json", "model.safetensors", "README.md", "conversion-report.json"} <= set(listed)


def test_its_digests_agree_with_the_report(converted):
    sums = dict(reversed(line.split("  ", 1)) for line in (converted / CHECKSUMS_NAME).read_text().splitlines())
    report = json.loads((converted / "conversion-report.json").read_text())
    for entry in report["files"]:
        assert sums[entry["name"]] == entry["sha256"], entry["name"]


def test_sha256sum_check_catches_a_changed_file(converted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(converted, copy)
    with (copy / "config.json").open("a") as f:
        f.write(" ")
    result = subprocess.run([_sha256sum(), "--check", CHECKSUMS_NAME], cwd=copy, capture_output=True, text=True)
    assert result.returncode == 1
    assert "config.json: FAILED" in result.stdout


def test_subfolders_are_listed_by_relative_path_and_old_sums_are_replaced(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / CHECKSUMS_NAME).write_text("stale\n")
    write_checksums(tmp_path)
    names = [line.split("  ", 1)[1] for line in (tmp_path / CHECKSUMS_NAME).read_text().splitlines()]
    assert names == ["a.txt", "sub/b.txt"]
    result = subprocess.run([_sha256sum(), "--check", "--strict", CHECKSUMS_NAME], cwd=tmp_path, capture_output=True)
    assert result.returncode == 0


def test_a_name_sha256sum_would_escape_is_refused(tmp_path):
    (tmp_path / "bad\\name").write_text("x")
    with pytest.raises(OutputError, match="(?i)rename the file"):
        write_checksums(tmp_path)
