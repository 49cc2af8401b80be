"""The ``check-checkpoint-safety`` pre-commit hook, on real Trainer checkpoints and a malicious one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from longformer_action.safety import SUFFIXES, check_file, main

ROOT = Path(__file__).resolve().parents[1]


class _MakesFolder:
    """Unpickling this runs ``os.mkdir``: what a malicious checkpoint does."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def _hook(*files: Path):
    return CliRunner().invoke(main, [str(f) for f in files])


def test_plain_trainer_checkpoint_passes(checkpoints):
    assert check_file(checkpoints["plain"]) is None
    result = _hook(checkpoints["plain"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


@pytest.mark.parametrize("name", ["wrapped-pytorch_lightning", "origin-lightning"])
def test_path_and_namespace_hparams_are_named(checkpoints, name):
    result = _hook(checkpoints[name])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{checkpoints[name]}: unpickling would import ")
    assert "pathlib.PosixPath" in lines[0] and "argparse.Namespace" in lines[0]


def test_malicious_checkpoint_is_refused_and_never_runs(checkpoints, tmp_path):
    target = tmp_path / "created-by-unpickling"
    payload = torch.load(checkpoints["plain"], weights_only=True, map_location="cpu")
    payload["callbacks"] = {"evil": _MakesFolder(target)}
    path = tmp_path / "evil.ckpt"
    torch.save(payload, path)

    result = _hook(path)
    assert result.exit_code == 1
    assert not target.exists()  # the check read the opcodes; it ran nothing
    assert re.fullmatch(rf"{re.escape(str(path))}: unpickling would import .*posix\.mkdir.*", result.stderr.strip())


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_both_serialization_formats_are_read_without_running_anything(checkpoints, tmp_path, zipped):
    # zip files go to torch's get_unsafe_globals_in_checkpoint, legacy ones to the restricted unpickler
    target = tmp_path / "created-by-unpickling"
    clean, evil = tmp_path / "clean.pt", tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "step": 3}, clean, _use_new_zipfile_serialization=zipped)
    torch.save({"w": torch.ones(2), "hook": _MakesFolder(target)}, evil, _use_new_zipfile_serialization=zipped)
    assert check_file(clean) is None
    refused = check_file(evil)
    assert refused is not None and refused.startswith(f"{evil}: unpickling would import ") and "mkdir" in refused
    assert not target.exists()


def test_one_line_per_refused_file_and_clean_files_are_silent(checkpoints, tmp_path):
    state = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2), "meta": {"step": 3, "names": ["a", "b"]}}, state)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00not a checkpoint at all")
    result = _hook(checkpoints["plain"], state, checkpoints["origin-pytorch_lightning"], junk)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(checkpoints["origin-pytorch_lightning"]), str(junk)]
    assert "cannot be checked" in lines[1]


def test_console_script_is_installed(checkpoints):
    script = shutil.which("check-checkpoint-safety", path=str(Path(sys.executable).parent))
    assert script, "pip install -e . installs the check-checkpoint-safety console script"
    # as pre-commit calls it: every staged file in one run, which fails naming only the unsafe one
    ok, bad = str(checkpoints["plain"]), str(checkpoints["wrapped-lightning"])
    result = subprocess.run([script, ok, bad], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert f"{bad}: unpickling would import argparse.Namespace" in result.stderr
    assert ok not in result.stderr


def test_hook_manifest_matches_the_console_script():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "check-checkpoint-safety"]
    assert hook["entry"] == "check-checkpoint-safety"
    assert hook["language"] == "python"
    pattern = re.compile(hook["files"])
    assert all(pattern.search(f"models/best{suffix}") for suffix in SUFFIXES)
    assert not pattern.search("model.safetensors") and not pattern.search("train.py")
    manifests = {"validate-manifest": ".pre-commit-hooks.yaml", "validate-config": ".pre-commit-config.yaml"}
    for command, name in manifests.items():
        subprocess.run([sys.executable, "-m", "pre_commit", command, name], cwd=ROOT, check=True)
