"""Distributed checkpoint folders: FSDP sharded (read), DeepSpeed ZeRO and XLA FSDP (explained)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shlex
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from longformer_action import demo
from longformer_action.errors import CheckpointError
from longformer_action.reading.checkpoint import read_checkpoint
from longformer_action.reading.distributed import DEEPSPEED_ZERO, FSDP_SHARDED, XLA_FSDP_SHARDED, find_layout

from .helpers import one_error_line

#: One xdist worker runs them all: its fixtures train with FSDP once.
pytestmark = pytest.mark.xdist_group("distributed")


def _cpu_fsdp_strategy():
    """Lightning's ``FSDPStrategy``, allowed to run on CPU.

    Two things in Lightning 2.6 keep FSDP off the CPU, neither of them in the saving path: the
    accelerator connector refuses ``type(strategy) is FSDPStrategy`` without a GPU (a subclass passes),
    and ``_setup_model`` hands FSDP ``device_id=root_device.index``, which is ``None`` on CPU, so torch
    looks for an accelerator. This subclass passes ``device_id=cpu`` instead; wrapping, training,
    the process group (gloo) and ``save_checkpoint`` (``torch.distributed.checkpoint`` plus ``meta.pt``)
    are Lightning's and torch's own.
    """
    from pytorch_lightning.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    class CPUFSDPStrategy(FSDPStrategy):
        def _setup_model(self, model):
            return FullyShardedDataParallel(
                module=model,
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=torch.device("cpu"),
                **self.kwargs,
            )

    return CPUFSDPStrategy(state_dict_type="sharded")


@pytest.fixture(scope="module")
def fsdp(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """An FSDP sharded checkpoint folder from a real ``Trainer`` run, and the module's own state dict."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    folder = tmp_path_factory.mktemp("fsdp") / "epoch=0-step=3.ckpt"
    environ = dict(os.environ)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    module = demo.make_module(base_model, layout="wrapped", data_dir="/data/qa")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = pl.Trainer(
                max_steps=3,
                accelerator="cpu",
                devices=1,
                strategy=_cpu_fsdp_strategy(),
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            trainer.fit(module, train_dataloaders=DataLoader(demo.batches(base_model, 3), batch_size=None))
            trainer.save_checkpoint(folder)
            expected = {k: v.detach().clone() for k, v in module.state_dict().items()}
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
    return folder, expected


def fsdp_rank(base: str, folder: str, shards: str) -> None:
    """One rank of a two-process FSDP run, launched as ``torchrun`` does (``LOCAL_RANK`` etc. set).

    With two ranks FSDP really shards (``FULL_SHARD``), so the folder holds each tensor in chunks from
    both ranks. Each rank also saves its own shards as FSDP hands them out in memory (tensor, offsets):
    the reference the consolidated folder must equal. (Gathering a full state dict instead crashes
    torch 2.13's FSDP on CPU.)
    """
    import pytorch_lightning as pl
    from lightning_fabric.strategies.fsdp import _get_sharded_state_dict_context
    from torch.distributed._shard.sharded_tensor import ShardedTensor
    from torch.utils.data import DataLoader

    module = demo.make_module(Path(base), layout="wrapped")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            max_steps=2,
            accelerator="cpu",
            devices=2,
            strategy=_cpu_fsdp_strategy(),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, train_dataloaders=DataLoader(demo.batches(Path(base), 2), batch_size=None))
        trainer.save_checkpoint(folder)
        with _get_sharded_state_dict_context(trainer.strategy.model):
            state = trainer.strategy.model.state_dict()
    mine = {}
    for key, value in state.items():
        if isinstance(value, ShardedTensor):
            parts = [(tuple(s.metadata.shard_offsets), s.tensor.detach().clone()) for s in value.local_shards()]
            mine[key] = (tuple(value.size()), parts)
        else:
            mine[key] = (tuple(value.shape), [((0,) * value.dim(), value.detach().clone())])
    torch.save(mine, f"{shards}.{trainer.global_rank}")
    torch.distributed.destroy_process_group()


def _assemble(pieces: list[dict]) -> dict[str, torch.Tensor]:
    full: dict[str, torch.Tensor] = {}
    for rank in pieces:
        for key, (size, parts) in rank.items():
            for offsets, tensor in parts:
                target = full.setdefault(key, torch.full(size, float("nan"), dtype=tensor.dtype))
                target[tuple(slice(o, o + n) for o, n in zip(offsets, tensor.shape, strict=True))] = tensor
    return full


@pytest.fixture(scope="module")
def fsdp_two_ranks(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """An FSDP sharded folder written by two real ``Trainer`` processes, and the ranks' shards put together."""
    work = tmp_path_factory.mktemp("fsdp2")
    folder, shards = work / "two-ranks.ckpt", work / "shards.pt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; from tests.test_distributed import fsdp_rank; fsdp_rank(*sys.argv[1:])"
    ranks = []
    try:
        for rank in range(2):
            env = {
                **os.environ,
                "LOCAL_RANK": str(rank),
                "NODE_RANK": "0",
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
            ranks.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, str(base_model), str(folder), str(shards)],
                    cwd=Path(__file__).parents[1],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for process in ranks:
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-3000:]
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
                process.communicate()
    pieces = [torch.load(f"{shards}.{rank}", weights_only=True) for rank in range(2)]
    return folder, _assemble(pieces)


def test_two_rank_fsdp_folder_is_consolidated_exactly(fsdp_two_ranks):
    folder, expected = fsdp_two_ranks
    assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    with (folder / ".metadata").open("rb") as f:
        index = pickle.load(f)
    assert max(len(entry.chunks) for entry in index.state_dict_metadata.values() if hasattr(entry, "chunks")) == 2

    ckpt = read_checkpoint(folder)
    assert set(ckpt.state_dict) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(ckpt.state_dict[key], tensor), key
    assert ckpt.global_step == 2


def test_real_trainer_wrote_the_sharded_layout(fsdp):
    folder, _ = fsdp
    names = {p.name for p in folder.iterdir()}
    assert {".metadata", "meta.pt"} <= names and any(n.endswith(".distcp") for n in names)
    assert find_layout(folder).kind == FSDP_SHARDED


def test_fsdp_folder_reads_as_the_unsharded_state_dict(fsdp):
    folder, expected = fsdp
    ckpt = read_checkpoint(folder)
    assert ckpt.path == folder
    assert ckpt.file_format == "torch-distributed"
    assert ckpt.writer == "lightning-1.x-2.x"
    assert ckpt.loader == "weights-only"
    assert set(ckpt.state_dict) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(ckpt.state_dict[key], tensor), key
    assert ckpt.global_step == 3 and ckpt.lightning_version and ckpt.lightning_version[0] == "2"
    assert ckpt.hyper_parameters["lr"] == "0.001" and ckpt.hyper_parameters["data_dir"] == "'/data/qa'"
    assert "state_dict" in ckpt.top_level_keys
    # the optimizer's moments are in the folder but are not read
    assert ckpt.weight_bytes() < ckpt.file_bytes / 2.5
    assert len(ckpt.sha256) == 64


@pytest.mark.parametrize("inside", [".metadata", "__0_0.distcp", "meta.pt"])
def test_a_file_inside_the_folder_reads_the_folder(fsdp, inside):
    folder, expected = fsdp
    ckpt = read_checkpoint(folder / inside)
    assert ckpt.path == folder and set(ckpt.state_dict) == set(expected)


def test_relative_paths_name_the_folder(fsdp, monkeypatch):
    folder, expected = fsdp
    monkeypatch.chdir(folder)
    for given in ("meta.pt", "."):
        ckpt = read_checkpoint(Path(given))
        assert ckpt.path == folder and set(ckpt.state_dict) == set(expected)


def test_folder_digest_is_sha256sum_of_its_files(fsdp):
    import hashlib

    folder, _ = fsdp
    lines = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
        for p in sorted(folder.iterdir(), key=lambda p: p.name.encode())
    )
    assert read_checkpoint(folder).sha256 == hashlib.sha256(lines.encode()).hexdigest()


def test_convert_fsdp_folder_passes_the_check(fsdp, cli, base_model, tmp_path):
    folder, _ = fsdp
    out = tmp_path / "out"
    result = cli("convert", "--checkpoint", folder, "--output", out, "--base-model", base_model)
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["status"] == "ok" and report["check"]["passed"]
    assert "check: passed" in result.stderr
    assert report["source"]["sha256"] == read_checkpoint(folder).sha256
    verified = cli("verify", "--model", out, "--checkpoint", folder)
    assert verified.exit_code == 0, verified.stderr


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for p in folder.iterdir():
        (to / p.name).write_bytes(p.read_bytes())
    return to


class _CreatesFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_meta_pt_is_read_with_the_safety_tiers(fsdp, tmp_path):
    folder = _copy(fsdp[0], tmp_path / "evil.ckpt")
    target = tmp_path / "pwned"
    meta = torch.load(folder / "meta.pt", weights_only=False)
    meta["hyper_parameters"]["payload"] = _CreatesFile(target)
    torch.save(meta, folder / "meta.pt")

    ckpt = read_checkpoint(folder)
    assert not target.exists(), "reading the folder ran its code"
    assert ckpt.loader == "restricted" and "posix.mkdir" in ckpt.placeholders
    assert ckpt.hyper_parameters["payload"] == "posix.mkdir"
    read_checkpoint(folder, trust=True)
    assert target.exists()


def test_index_is_read_with_the_safety_tiers(fsdp, tmp_path):
    folder = _copy(fsdp[0], tmp_path / "evil-index.ckpt")
    target = tmp_path / "pwned-index"
    (folder / ".metadata").write_bytes(pickle.dumps(_CreatesFile(target)))
    with pytest.raises(CheckpointError, match="not a torch.distributed.checkpoint index"):
        read_checkpoint(folder)
    assert not target.exists(), "reading the index ran its code"


def test_index_cannot_point_outside_the_folder(fsdp, tmp_path):
    folder = _copy(fsdp[0], tmp_path / "escape.ckpt")
    with (folder / ".metadata").open("rb") as f:
        index = pickle.load(f)
    for info in index.storage_data.values():
        info.relative_path = "../../secret"
    (folder / ".metadata").write_bytes(pickle.dumps(index))
    with pytest.raises(CheckpointError, match="outside the folder"):
        read_checkpoint(folder)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: (f / "__0_0.distcp").write_bytes((f / "__0_0.distcp").read_bytes()[:1000]), "copy the whole"),
        (lambda f: (f / "__0_0.distcp").unlink(), "lacks __0_0.distcp"),
        (lambda f: (f / ".metadata").write_bytes((f / ".metadata").read_bytes()[:200]), "index .metadata is truncated"),
    ],
    ids=["cut-shard", "missing-shard", "cut-index"],
)
def test_damaged_folder_is_one_error(fsdp, tmp_path, cli, damage, expected):
    folder = _copy(fsdp[0], tmp_path / "damaged.ckpt")
    damage(folder)
    line = one_error_line(cli("inspect", "--checkpoint", folder))
    assert expected in line


# --- DeepSpeed ZeRO and XLA FSDP: recognised, with the exact command ------------------------------


def _deepspeed_folder(root: Path, *, latest: bool = True) -> Path:
    """The files Lightning's DeepSpeedStrategy writes for one rank (tag ``checkpoint``), contents aside."""
    tag = root / "checkpoint"
    tag.mkdir(parents=True)
    if latest:
        (root / "latest").write_text("checkpoint")
    (root / "zero_to_fp32.py").write_text("# DeepSpeed's consolidation script\n")
    torch.save({"module": {}, "epoch": 0, "global_step": 3}, tag / "mp_rank_00_model_states.pt")
    torch.save({"optimizer_state_dict": {"zero_stage": 2}}, tag / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return root


@pytest.mark.parametrize(
    "given",
    [
        "",
        "checkpoint",
        "checkpoint/mp_rank_00_model_states.pt",
        "checkpoint/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "latest",
    ],
    ids=["folder", "tag-folder", "model-states", "optim-states", "latest"],
)
def test_deepspeed_folder_gives_the_consolidation_command(tmp_path, cli, given):
    root = _deepspeed_folder(tmp_path / "epoch=0-step=3.ckpt")
    layout = find_layout(root / given)
    assert layout is not None and layout.kind == DEEPSPEED_ZERO and layout.root == root

    line = one_error_line(cli("inspect", "--checkpoint", root / given))
    assert "DeepSpeed ZeRO" in line and "convert_zero_checkpoint_to_fp32_state_dict" in line
    command = line.split(" run ", 1)[1].split(" and pass ", 1)[0]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<command>", "exec")
    assert json.dumps(str(root)) in argv[2]
    out = str(tmp_path / "epoch=0-step=3-consolidated.ckpt")
    assert json.dumps(out) in argv[2] and line.rstrip(".").endswith(f"--checkpoint {shlex.quote(out)}")
    if not __import__("importlib").util.find_spec("deepspeed"):
        assert "pip install deepspeed" in line


def test_deepspeed_tag_folder_without_latest_names_its_tag(tmp_path):
    root = _deepspeed_folder(tmp_path / "run", latest=False)
    layout = find_layout(root / "checkpoint")
    assert (layout.root, layout.tag) == (root, "checkpoint")


def test_xla_fsdp_folder_gives_the_consolidation_command(tmp_path, cli):
    root = tmp_path / "xla.ckpt"
    root.mkdir()
    for rank in range(2):
        torch.save({"model": {}}, root / f"checkpoint_rank-{rank:08d}-of-00000002.pth")
    assert find_layout(root / "checkpoint_rank-00000001-of-00000002.pth").kind == XLA_FSDP_SHARDED
    line = one_error_line(cli("inspect", "--checkpoint", root))
    assert "XLA FSDP" in line and f"--ckpt_prefix {root / 'checkpoint'}" in line


def test_plain_directories(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_error_line(cli("inspect", "--checkpoint", empty)) == (
        f"Error: checkpoint {empty} is a folder with no .ckpt file in it, and it is neither a transformers folder nor "
        "a distributed checkpoint (FSDP sharded, DeepSpeed ZeRO or XLA FSDP). Pass the checkpoint file the Trainer "
        "wrote, e.g. --checkpoint lightning_logs/version_0/checkpoints/last.ckpt."
    )
    logs = tmp_path / "checkpoints"
    logs.mkdir()
    for step in range(6):
        (logs / f"epoch=0-step={step}.ckpt").write_bytes(b"")
    line = one_error_line(cli("inspect", "--checkpoint", logs))
    assert "is a folder holding 6 .ckpt files: epoch=0-step=0.ckpt, " in line
    assert "epoch=0-step=4.ckpt and 1 more. Pass one of them, e.g. --checkpoint " in line


def test_meta_pt_object_that_cannot_be_rebuilt_with_trust(fsdp, tmp_path, cli):
    folder = _copy(fsdp[0], tmp_path / "windows.ckpt")
    meta = torch.load(folder / "meta.pt", weights_only=False)
    meta["hyper_parameters"]["data_dir"] = _SavedOnWindows(r"C:\data\qa")
    torch.save(meta, folder / "meta.pt")
    line = one_error_line(cli("inspect", "--checkpoint", folder, "--trust-checkpoint"))
    assert "pathlib.WindowsPath" in line and "without --trust-checkpoint" in line and "corrupt" not in line
    assert read_checkpoint(folder).hyper_parameters["data_dir"] == "pathlib.WindowsPath"


class _SavedOnWindows:
    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self):
        import pathlib

        return (pathlib.WindowsPath, (self.text,))
