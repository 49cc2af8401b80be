"""The folder in the transformers versions downstream jobs run: 4.46 and the newest 4.x, beside 5.x.

Every task's session checkpoint is converted in each dtype (float32, float16, bfloat16) against base
folders made from public models' files (byte-level BPE, WordPiece and sentencepiece tokenizers; the
arXiv LED with its generation settings in ``config.json``). ``tests/compat_probe.py`` then loads each
folder as a downstream job does, in this Python (transformers 5) and in each compatibility
environment's, and the results are compared: the dtype it loads in, no missing or unexpected key, the
outputs on the same ids, the tokenizer's ids and decoded texts (fast and, in 4.x, the slow classes
reading the legacy files), the generation settings and the sequence ``generate()`` makes with them,
and the model card's snippet.

The environments are virtual environments beside ``.venv`` that ``.ci/run`` builds from
``requirements/compat-*.txt`` (``.venv-compat-446`` from ``compat-446.txt``). Where one is missing
the test skips with the reason, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from longformer_action.checking.check import DEFAULT_ATOL
from longformer_action.checking.inputs import make_inputs
from longformer_action.registry import tasks
from longformer_action.registry.attention import global_attention_mask
from longformer_action.registry.families import sep_token_id

from . import compat_probe
from .conftest import LONGFORMER_TASKS

#: One xdist worker runs them all: its fixtures convert the folders and start the old transformers once.
pytestmark = pytest.mark.xdist_group("compat")

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("compat_probe.py")
ENVIRONMENTS = sorted(p.stem.removeprefix("compat-") for p in (ROOT / "requirements").glob("compat-*.txt"))
DTYPES = ("float32", "float16", "bfloat16")
#: (key, task, base, dtype): every task in every dtype, and the other tokenizer kinds once.
FOLDERS = [
    *[
        (f"{task}-{dtype}", task, "longformer-base-4096", dtype)
        for task in (*LONGFORMER_TASKS, "text2text-generation", "led-feature-extraction")
        for dtype in DTYPES
    ],
    ("wordpiece-fill-mask", "fill-mask", "longformer-chinese-bert-vocab", "float32"),
    ("sentencepiece-fill-mask", "fill-mask", "xlm-roberta-longformer-base-4096", "float32"),
]


def _pinned(environment: str) -> str:
    text = (ROOT / "requirements" / f"compat-{environment}.txt").read_text()
    return next(line.split("==")[1].strip() for line in text.splitlines() if line.startswith("transformers=="))


def _python(environment: str) -> Path:
    python = ROOT / f".venv-compat-{environment}" / "bin" / "python"
    if python.is_file():
        return python
    reason = f"{python.parent.parent.name} is missing (.ci/run builds it from requirements/compat-{environment}.txt)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the compatibility test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def folders(public_folders, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """key -> the converted folder and what the probe needs: its auto class and its inputs (saved). The folders
    are the session's conversions against the public models' bases (``public_folders``: the float32 ones are
    ``tests/test_public_models.py``'s)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("compat")
    made = {}
    for key, task, name, dtype in FOLDERS:
        led = task in ("text2text-generation", "led-feature-extraction")
        name = "led-large-16384-arxiv" if led else name
        out, result = public_folders[(name, "with-tokenizer", task, dtype)]
        assert result.exit_code == 0, result.stderr
        report = json.loads((out / "conversion-report.json").read_text())
        entry = tasks.get(report["conversion"]["task"], report["conversion"]["family"])
        config = entry.model_class().config_class.from_pretrained(out)
        inputs = make_inputs(entry, config, AutoTokenizer.from_pretrained(out))
        convention = report["conversion"]["global_attention"]
        if convention["call"]:  # as the model card says: the mask the module trained with, passed explicitly
            sep = sep_token_id(config)
            inputs["global_attention_mask"] = global_attention_mask(convention["convention"], inputs["input_ids"], sep)
        torch.save(inputs, root / f"{key}.inputs.pt")
        made[key] = {
            "key": key,
            "folder": str(out),
            "auto_class": entry.auto_class,
            "inputs": str(root / f"{key}.inputs.pt"),
            "outputs": [n for n in entry.outputs if n != "pooler_output" or report["conversion"]["pooler"]],
            "dtype": dtype,
            "full": dtype == "float32",  # the tokenizer and the card's snippet do not depend on the dtype
        }
    return made


@pytest.fixture(scope="module")
def probed(folders, tmp_path_factory) -> dict[str, Any]:
    """environment -> the probe's results (``5`` is this Python, probed in this process while the compatibility
    environments' probes run beside it)."""
    pythons: dict[str, Path] = {}
    missing = []
    for environment in ENVIRONMENTS:
        python = ROOT / f".venv-compat-{environment}" / "bin" / "python"
        (pythons.__setitem__(environment, python) if python.is_file() else missing.append(environment))
    root = tmp_path_factory.mktemp("probe")
    spec = root / "spec.json"
    spec.write_text(json.dumps(list(folders.values())))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    env["OMP_NUM_THREADS"] = "1"  # three processes side by side: one thread each, not three fighting for the cores
    running = {
        name: subprocess.Popen(
            [str(python), str(PROBE), str(spec), str(root / f"{name}.pt")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
        for name, python in pythons.items()
    }
    results: dict[str, Any] = {"missing": missing}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as the environments' probes run (PYTHONWARNINGS=ignore)
        compat_probe.main(str(spec), str(root / "5.pt"))
    results["5"] = torch.load(root / "5.pt", weights_only=False)
    for name, process in running.items():
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, f"the probe failed under {name}:\n{output.decode()[-3000:]}"
        results[name] = torch.load(root / f"{name}.pt", weights_only=False)
    return results


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_environment_runs_the_pinned_transformers(probed, environment):
    _python(environment)
    assert probed[environment]["transformers"] == _pinned(environment)
    assert probed["5"]["transformers"].startswith("5.")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("key", [f[0] for f in FOLDERS])
def test_the_folder_loads_with_equal_outputs(probed, folders, environment, key):
    _python(environment)
    mine, theirs = probed[environment]["folders"][key], probed["5"]["folders"][key]
    assert "error" not in mine, mine.get("error")
    assert "error" not in theirs, theirs.get("error")
    folder = folders[key]
    if folder["full"]:
        assert mine["card"] == theirs["card"] == "ok", "the model card's snippet runs"
    assert mine["dtype"] == theirs["dtype"] == folder["dtype"], "the saved dtype, as the card says to load it"
    assert mine["loading"] == theirs["loading"] == {"missing_keys": [], "unexpected_keys": []}
    atol = DEFAULT_ATOL[folder["dtype"]]
    for name in folder["outputs"]:
        diff = (mine["outputs"][name] - theirs["outputs"][name]).abs().max().item()
        assert diff <= atol, f"{name} differs by {diff} in transformers {probed[environment]['transformers']}"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("key", [f[0] for f in FOLDERS if f[3] == "float32"])
def test_the_tokenizer_gives_the_same_ids_and_texts(probed, environment, key):
    _python(environment)
    mine, theirs = probed[environment]["folders"][key], probed["5"]["folders"][key]
    for name in ("text", "pair", "unicode", "mask", "model_max_length"):
        assert mine["tokens"].get(name) == theirs["tokens"].get(name), name
    for name in ("text", "pair", "unicode", "mask"):  # the slow class, from the legacy vocabulary files
        assert mine["slow_tokens"].get(name) == theirs["tokens"].get(name), name


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("key", [f[0] for f in FOLDERS if f[1] == "text2text-generation"])
def test_generation_settings_and_generate(probed, environment, key):
    _python(environment)
    mine, theirs = probed[environment]["folders"][key], probed["5"]["folders"][key]
    expected = {"num_beams": 4, "max_length": 32, "min_length": 6, "no_repeat_ngram_size": 3, "length_penalty": 2.0}
    expected["early_stopping"] = True
    assert {k: mine["generation"][k] for k in expected} == {k: theirs["generation"][k] for k in expected} == expected
    assert mine["from_model_config"] is False
    assert mine["generated"].shape[-1] >= 6, "min_length is honoured"
    if key.endswith("float32"):
        # the same beams, the same sequence (in half precision the logits agree within the dtype's tolerance,
        # and a beam search over them may part ways where two candidates are that close)
        assert torch.equal(mine["generated"], theirs["generated"])
