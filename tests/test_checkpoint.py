"""Reading checkpoints of every generation, safely."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from longformer_action.checkpoint import read_checkpoint, unsafe_globals
from longformer_action.errors import CheckpointError


class _CreatesFile:
    """An object whose unpickling creates a file: what a malicious checkpoint does."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def _lightning_dict(source: Path) -> dict:
    return torch.load(source, weights_only=False, map_location="cpu")


def test_current_lightning_checkpoint_uses_restricted_loader(checkpoints):
    ckpt = read_checkpoint(checkpoints["wrapped-pytorch_lightning"])
    assert ckpt.file_format == "zip"
    assert ckpt.generation == "lightning-1.x-2.x"
    assert ckpt.loader == "restricted"  # Path and Namespace in the hyper-parameters
    assert "pathlib.PosixPath" in ckpt.placeholders
    assert ckpt.lightning_version and ckpt.lightning_version[0] == "2"
    assert ckpt.global_step == 3
    assert ckpt.hyper_parameters["data_dir"] == "pathlib.PosixPath"
    assert ckpt.hyper_parameters["lr"] == "0.001"
    assert "optimizer_states" in ckpt.top_level_keys
    # weights are about a third of a checkpoint with AdamW state
    assert ckpt.weight_bytes() < ckpt.file_bytes / 2.5
    assert len(ckpt.sha256) == 64


def test_plain_hparams_use_weights_only_loader(checkpoints):
    ckpt = read_checkpoint(checkpoints["plain"])
    assert ckpt.loader == "weights-only"
    assert ckpt.placeholders == []


@pytest.mark.parametrize("package", ["pytorch_lightning", "lightning"])
def test_both_lightning_packages(checkpoints, package):
    ckpt = read_checkpoint(checkpoints[f"origin-{package}"])
    assert ckpt.generation == "lightning-1.x-2.x"
    assert "qa_outputs.weight" in ckpt.state_dict


def test_state_dict_tensors_equal_what_torch_saved(checkpoints):
    path = checkpoints["wrapped-lightning"]
    full = _lightning_dict(path)["state_dict"]
    ours = read_checkpoint(path).state_dict
    assert set(full) == set(ours)
    for key, tensor in full.items():
        assert torch.equal(tensor, ours[key]), key


def test_legacy_lightning_06_format(checkpoints, tmp_path):
    # Lightning 0.6 with torch < 1.6: non-zip serialization, `hparams` as a plain dict, no version key
    source = _lightning_dict(checkpoints["origin-pytorch_lightning"])
    legacy = {
        "epoch": 3,
        "global_step": 1200,
        "checkpoint_callback_best": 0.77,
        "early_stop_callback_wait": 0,
        "early_stop_callback_patience": 3,
        "optimizer_states": source["optimizer_states"],
        "lr_schedulers": [],
        "state_dict": source["state_dict"],
        "hparams": {"attention_window": 256, "save_dir": Path("/out")},
    }
    path = tmp_path / "legacy.ckpt"
    torch.save(legacy, path, _use_new_zipfile_serialization=False)
    ckpt = read_checkpoint(path)
    assert ckpt.file_format == "legacy"
    assert ckpt.generation == "lightning-0.6-0.7"
    assert ckpt.lightning_version is None
    assert (ckpt.epoch, ckpt.global_step) == (3, 1200)
    assert set(ckpt.hyper_parameters) == {"attention_window", "save_dir"}
    for key, tensor in source["state_dict"].items():
        assert torch.equal(tensor, ckpt.state_dict[key])


def test_lightning_08_attribute_dict(checkpoints, tmp_path):
    from lightning_fabric.utilities.data import AttributeDict

    source = _lightning_dict(checkpoints["wrapped-pytorch_lightning"])
    old = {
        "epoch": 1,
        "global_step": 10,
        "pytorch-lightning_version": "0.8.5",
        "state_dict": source["state_dict"],
        "optimizer_states": source["optimizer_states"],
        "lr_schedulers": [],
        "hparams_name": "hparams",
        "hyper_parameters": AttributeDict(lr=3e-5, model_name="longformer-base-4096"),
    }
    path = tmp_path / "v08.ckpt"
    torch.save(old, path)
    ckpt = read_checkpoint(path)
    assert ckpt.generation == "lightning-0.8-0.9"
    assert ckpt.loader == "restricted"
    assert ckpt.hyper_parameters == {"lr": "3e-05", "model_name": "'longformer-base-4096'"}


def test_bare_state_dict_and_safetensors(checkpoints, tmp_path):
    from safetensors.torch import save_file

    state = _lightning_dict(checkpoints["plain"])["state_dict"]
    torch.save(state, tmp_path / "bare.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "bare.safetensors")
    for name, fmt in (("bare.pt", "zip"), ("bare.safetensors", "safetensors")):
        ckpt = read_checkpoint(tmp_path / name)
        assert (ckpt.generation, ckpt.file_format) == ("state-dict", fmt)
        assert set(ckpt.state_dict) == set(state)


def test_malicious_pickle_never_runs(checkpoints, tmp_path):
    target = tmp_path / "pwned"
    source = _lightning_dict(checkpoints["plain"])
    source["hyper_parameters"]["payload"] = _CreatesFile(target)
    path = tmp_path / "evil.ckpt"
    torch.save(source, path)
    assert not target.exists()

    ckpt = read_checkpoint(path)
    assert not target.exists(), "reading the checkpoint ran its code"
    assert "posix.mkdir" in ckpt.placeholders
    assert ckpt.hyper_parameters["payload"] == "posix.mkdir"
    assert "posix.mkdir" in unsafe_globals(path)
    assert not target.exists()

    # the test can fail: trusting the file does run it
    read_checkpoint(path, trust=True)
    assert target.exists()


def test_malicious_legacy_pickle_never_runs(checkpoints, tmp_path):
    target = tmp_path / "pwned-legacy"
    source = _lightning_dict(checkpoints["plain"])
    source["hparams"] = {"x": _CreatesFile(target)}
    path = tmp_path / "evil-legacy.ckpt"
    torch.save(source, path, _use_new_zipfile_serialization=False)
    read_checkpoint(path)
    assert not target.exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
        (lambda p: (p.write_text("epoch: 3\nstate: ok\n"), p)[1], "not a PyTorch checkpoint"),
        (lambda p: (p.write_bytes(pickle.dumps({"a": 1})[:5]), p)[1], "truncated or corrupt"),
    ],
    ids=["missing", "directory", "empty", "text", "truncated-legacy"],
)
def test_bad_files(tmp_path, make, expected):
    path = make(tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(path)


def test_truncated_zip(checkpoints, tmp_path):
    data = checkpoints["plain"].read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_deepspeed_directory(tmp_path):
    folder = tmp_path / "epoch=1.ckpt"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    with pytest.raises(CheckpointError, match="convert_zero_checkpoint_to_fp32_state_dict"):
        read_checkpoint(folder)
