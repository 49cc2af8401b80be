"""Reading checkpoints of every generation, safely."""

from __future__ import annotations

import importlib
import os
import pathlib
import pickle
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import pytest
import torch

from longformer_action.errors import CheckpointError
from longformer_action.reading.checkpoint import read_checkpoint
from longformer_action.reading.unpickling import unsafe_globals

from .helpers import one_error_line


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
    assert ckpt.writer == "lightning-1.x-2.x"
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
    assert ckpt.writer == "lightning-1.x-2.x"
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
    assert ckpt.writer == "lightning-0.6-0.7"
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
    assert ckpt.writer == "lightning-0.8-0.9"
    assert ckpt.loader == "restricted"
    assert ckpt.hyper_parameters == {"lr": "3e-05", "model_name": "'longformer-base-4096'"}


def test_bare_state_dict_and_safetensors(checkpoints, tmp_path):
    from safetensors.torch import save_file

    state = _lightning_dict(checkpoints["plain"])["state_dict"]
    torch.save(state, tmp_path / "bare.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "bare.safetensors")
    for name, fmt in (("bare.pt", "zip"), ("bare.safetensors", "safetensors")):
        ckpt = read_checkpoint(tmp_path / name)
        assert (ckpt.writer, ckpt.file_format) == ("state-dict", fmt)
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
        (lambda p: (p.mkdir(), p)[1], "is a folder with no .ckpt file in it"),
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


# --- trusted loading: objects that cannot be rebuilt here are not damage ------------------------


class _SavedOnWindows:
    """Pickles as a ``pathlib.WindowsPath`` does on Windows: the class by name, then its parts."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self):
        return (pathlib.WindowsPath, (self.text,))


def _with_hparam(source: Path, path: Path, **hparams) -> Path:
    """The real Trainer checkpoint at ``source`` with ``hparams`` added to its hyper-parameters."""
    checkpoint = _lightning_dict(source)
    checkpoint["hyper_parameters"].update(hparams)
    torch.save(checkpoint, path)
    return path


def test_hyper_parameters_show_the_values_of_lists_and_dicts_bounded(checkpoints, tmp_path):
    path = _with_hparam(
        checkpoints["plain"],
        tmp_path / "h.ckpt",
        labels=["O", "B-PER", "I-PER"],
        windows=(4, 4),
        id2label={0: "NEG", 1: "POS"},
        vocab=[f"token{i}" for i in range(100)],
        nested=[["a"], ["b"]],
    )
    described = read_checkpoint(path).hyper_parameters
    assert described["labels"] == "['O', 'B-PER', 'I-PER']"
    assert described["windows"] == "(4, 4)"
    assert described["id2label"] == "{0: 'NEG', 1: 'POS'}"
    assert described["vocab"].startswith("['token0', 'token1',") and described["vocab"].endswith("... (100 items)")
    assert len(described["vocab"]) <= 60 + len(" (100 items)")
    assert described["nested"] == "list", "only flat values are shown"


@pytest.fixture()
def throwaway_module(tmp_path, monkeypatch):
    """Write and import a module ``name`` with ``source``; afterwards it can be made to disappear."""
    made = []

    def make(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        made.append(name)
        return importlib.import_module(name)

    def forget(name: str) -> None:
        (tmp_path / f"{name}.py").unlink()
        sys.modules.pop(name, None)
        importlib.invalidate_caches()

    make.forget = forget
    yield make
    for name in made:
        sys.modules.pop(name, None)


def _rebuild_refused(path: Path, name: str) -> str:
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, trust=True)
    message = info.value.format_message()
    assert name in message
    assert "copy it again" not in message and "corrupt" not in message
    assert "without --trust-checkpoint" in message and "inert placeholder" in message
    return message


def test_windows_path_with_trust_is_not_called_corrupt(checkpoints, tmp_path, cli, base_model):
    # the example: hyper-parameters saved on Windows; WindowsPath() raises NotImplementedError here
    path = _with_hparam(
        checkpoints["wrapped-pytorch_lightning"], tmp_path / "windows.ckpt", data_dir=_SavedOnWindows(r"C:\data\qa")
    )
    message = _rebuild_refused(path, "pathlib.WindowsPath")
    assert "NotImplementedError" in message and "cannot be rebuilt here" in message

    ckpt = read_checkpoint(path)
    assert ckpt.hyper_parameters["data_dir"] == "pathlib.WindowsPath"
    assert "pathlib.WindowsPath" in ckpt.placeholders

    line = one_error_line(cli("inspect", "--checkpoint", path, "--trust-checkpoint"))
    assert "pathlib.WindowsPath" in line and "without --trust-checkpoint" in line
    result = cli("convert", "--checkpoint", path, "--output", tmp_path / "out", "--base-model", base_model)
    assert result.exit_code == 0, result.stderr


def test_object_whose_rebuild_raises_runtime_error_is_not_called_corrupt(checkpoints, tmp_path, throwaway_module):
    # another of the kind: a class whose __setstate__ needs what this machine lacks
    module = throwaway_module(
        "gpu_only_metric",
        """
        class RunningMean:
            def __init__(self):
                self.total = 0.0

            def __setstate__(self, state):
                raise RuntimeError("Attempting to deserialize object on a CUDA device")
        """,
    )
    path = _with_hparam(checkpoints["plain"], tmp_path / "metric.ckpt", metric=module.RunningMean())
    message = _rebuild_refused(path, "gpu_only_metric.RunningMean")
    assert "RuntimeError: Attempting to deserialize object on a CUDA device" in message
    assert read_checkpoint(path).hyper_parameters["metric"] == "gpu_only_metric.RunningMean"


def _cut_pickle(source: Path, path: Path) -> Path:
    """``source`` with its pickle stream (``data.pkl``) cut in half, the zip archive itself intact."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, data[: len(data) // 2] if item.filename.endswith("data.pkl") else data)
    return path


@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "trusted"])
def test_cut_pickle_stream_is_damage_in_every_tier(checkpoints, tmp_path, trust):
    path = _cut_pickle(checkpoints["wrapped-lightning"], tmp_path / "cut-pickle.ckpt")
    with pytest.raises(CheckpointError, match="truncated or corrupt.*copy it again"):
        read_checkpoint(path, trust=trust)


# --- trusted loading: globals the installed code no longer has ---------------------------------


def test_lightning_12_global_with_trust_is_one_error(checkpoints, tmp_path, cli, monkeypatch):
    # the example: Lightning 1.2 pickled this function into hyper-parameters; 2.x has no such module
    name = "pytorch_lightning.utilities.argparse_utils"
    old = types.ModuleType(name)

    def _gpus_arg_default(x):
        return x

    _gpus_arg_default.__module__, _gpus_arg_default.__qualname__ = name, "_gpus_arg_default"
    old._gpus_arg_default = _gpus_arg_default
    monkeypatch.setitem(sys.modules, name, old)
    path = _with_hparam(checkpoints["wrapped-pytorch_lightning"], tmp_path / "pl12.ckpt", gpus=_gpus_arg_default)
    monkeypatch.delitem(sys.modules, name)

    message = _rebuild_refused(path, f"{name}._gpus_arg_default")
    assert "ModuleNotFoundError" in message and "Install the code that wrote it" in message
    line = one_error_line(cli("inspect", "--checkpoint", path, "--trust-checkpoint"))
    assert f"{name}._gpus_arg_default" in line and "without --trust-checkpoint" in line

    ckpt = read_checkpoint(path)
    assert ckpt.hyper_parameters["gpus"] == f"{name}._gpus_arg_default"


def test_class_from_a_deleted_module_with_trust_is_one_error(checkpoints, tmp_path, cli, throwaway_module):
    module = throwaway_module(
        "my_experiment_config",
        """
        class Config:
            def __init__(self, lr):
                self.lr = lr
        """,
    )
    path = _with_hparam(checkpoints["plain"], tmp_path / "config.ckpt", config=module.Config(3e-5))
    throwaway_module.forget("my_experiment_config")

    message = _rebuild_refused(path, "my_experiment_config.Config")
    assert "No module named 'my_experiment_config'" in message
    assert one_error_line(cli("inspect", "--checkpoint", path, "--trust-checkpoint"))
    assert read_checkpoint(path).hyper_parameters["config"] == "my_experiment_config.Config"


def test_class_removed_from_a_module_that_remains(checkpoints, tmp_path, throwaway_module):
    module = throwaway_module(
        "my_callbacks",
        """
        class OldSchedule:
            pass
        """,
    )
    path = _with_hparam(checkpoints["plain"], tmp_path / "renamed.ckpt", schedule=module.OldSchedule())
    del module.OldSchedule
    message = _rebuild_refused(path, "my_callbacks.OldSchedule")
    assert "AttributeError" in message


def test_trusted_load_still_reads_everything(checkpoints):
    ckpt = read_checkpoint(checkpoints["wrapped-pytorch_lightning"], trust=True)
    assert ckpt.loader == "trusted"
    assert ckpt.hyper_parameters["data_dir"] == "PosixPath"
    assert ckpt.hyper_parameters["args"] == "Namespace"
    full = _lightning_dict(checkpoints["wrapped-pytorch_lightning"])["state_dict"]
    assert all(torch.equal(full[k], ckpt.state_dict[k]) for k in full)


# --- Lightning Fabric -----------------------------------------------------------------------------------


def test_a_fabric_checkpoint_is_read_from_its_model_entry(fabric_checkpoint):
    saved = torch.load(fabric_checkpoint, map_location="cpu", weights_only=True)
    assert sorted(saved) == ["hparams", "iteration", "model", "optimizer"], "as Fabric.save writes it"
    ckpt = read_checkpoint(fabric_checkpoint)
    assert ckpt.writer == "fabric" and ckpt.loader == "weights-only" and ckpt.lightning_version is None
    assert ckpt.global_step == 3 and ckpt.epoch is None
    assert ckpt.hparams["labels"] == ["O", "B-PER", "I-PER"] and ckpt.hparams["config"]["model_type"] == "longformer"
    assert set(ckpt.state_dict) == set(saved["model"])
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in saved["model"].items())
    assert {k.split(".")[0] for k in ckpt.state_dict} == {"longformer", "classifier"}


def test_a_fabric_checkpoint_with_two_models_names_each_copy(fabric_checkpoint, tmp_path, cli, base_model):
    saved = torch.load(fabric_checkpoint, map_location="cpu", weights_only=True)
    saved["ema"] = {k: v.clone() + 0.5 if v.is_floating_point() else v for k, v in saved["model"].items()}
    path = tmp_path / "two.ckpt"
    torch.save(saved, path)
    out = tmp_path / "model"
    result = cli("convert", "--checkpoint", path, "--output", out, "--base-model", base_model)
    line = one_error_line(result)
    assert "holds 2 copies of the model" in line and "--copy ema." in line and "--copy model." in line
    result = cli("convert", "--checkpoint", path, "--output", out, "--base-model", base_model, "--copy", "ema.")
    assert result.exit_code == 0, result.stderr
    from safetensors.torch import load_file

    assert torch.equal(load_file(out / "model.safetensors")["classifier.weight"], saved["ema"]["classifier.weight"])
