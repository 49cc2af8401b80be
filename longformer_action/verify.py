"""Prove a folder computes what the checkpoint computed: a per-tensor check and a forward-pass check.

Reference: the checkpoint's own tensors in an HF ``LongformerModel`` (the encoder) followed by the
head as the LightningModule applied it (a linear map to two logits, split into start and end).
Candidate: the folder reloaded from disk with ``AutoModelForQuestionAnswering.from_pretrained``,
sharing nothing with the conversion's objects. Both run on real question-answering inputs, a batch
of two with padding, longer than one attention window, so that the sliding window and the global
attention on the question both run.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint
from .convert import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, mapped_tensors, target_dtype
from .errors import ConversionError
from .mapping import ENCODER_TARGET, HEAD_TARGET, KeyMapping

#: Default absolute tolerance on the logits, by the dtype the weights were saved in. float32 weights
#: are bit-identical to the checkpoint's and run the same kernels, so the difference is 0 in
#: practice; 1e-5 is optimum's default and leaves room for kernel differences across machines.
#: float16 keeps ~3 significant digits per weight and bfloat16 ~2; the rounding adds up across
#: layers, so their bounds are wider (a wrong weight still moves logits by far more).
DEFAULT_ATOL = {"float32": 1e-5, "float64": 1e-7, "float16": 1e-2, "bfloat16": 5e-2}

SAMPLE_QUESTION = "Where is the Eiffel Tower?"
SAMPLE_CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower."
)


@dataclass
class OutputDiff:
    """One output of the forward pass, compared."""

    name: str
    shape: list[int]
    max_abs: float
    max_rel: float
    atol: float
    passed: bool


@dataclass
class CheckResult:
    """The outcome of the check; ``failures`` holds one human line per problem."""

    passed: bool
    dtype: str
    atol: float
    outputs: list[OutputDiff] = field(default_factory=list)
    tensors_compared: int = 0
    tensor_failures: list[str] = field(default_factory=list)
    loading: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def max_abs_diff(self) -> float:
        """The largest absolute difference over all outputs (``inf`` when outputs could not be compared)."""
        return max((o.max_abs for o in self.outputs), default=float("inf"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the report."""
        data = asdict(self)
        data["max_abs_diff"] = self.max_abs_diff
        return data


def saved_dtype(folder: Path) -> str:
    """The floating dtype the folder's weights are stored in (``float32`` when unknown)."""
    config = json.loads((folder / "config.json").read_text())
    value = config.get("dtype") or config.get("torch_dtype") or "float32"
    return str(value).removeprefix("torch.")


def _weight_files(folder: Path) -> list[Path]:
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    return [folder / WEIGHTS_NAME]


def compare_tensors(folder: Path, expected: Mapping[str, Any], dtype: str) -> tuple[int, list[str]]:
    """Compare every tensor in the folder's weights with its source, cast as the conversion cast it.

    Exact: a cast is deterministic, so ``saved == source.to(dtype)`` bit for bit.

    Returns:
        The number of tensors compared, and one line per difference (including missing and extra).
    """
    import torch
    from safetensors import safe_open

    failures: list[str] = []
    seen: set[str] = set()
    for path in _weight_files(folder):
        if not path.is_file():
            failures.append(f"weights file {path.name} is missing")
            continue
        with safe_open(path, framework="pt") as f:
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


def attention_window(config: Any) -> int:
    """The widest (two-sided) attention window over the layers."""
    window = config.attention_window
    return int(max(window)) if isinstance(window, (list, tuple)) else int(window)


def make_inputs(config: Any, tokenizer: Any = None, *, seed: int = 0) -> dict[str, Any]:
    """Two question-answering samples of different lengths, padded, longer than the one-sided window.

    With the tokenizer when there is one (a question and a context); otherwise token ids in
    the ``<s> question </s></s> context </s>`` shape with exactly three separators, from a seeded
    generator.
    """
    import torch

    window = attention_window(config)
    max_len = config.max_position_embeddings - config.pad_token_id - 2
    # longer than the one-sided window (window // 2), so that the first tokens cannot see the last
    # ones and the sliding window decides what each token attends to; Longformer pads to a
    # multiple of ``window``, so this costs one window of compute per sample
    one_sided = window // 2
    target = min(max(one_sided + one_sided // 2 + 8, 48), max_len)
    sep, cls, pad = config.sep_token_id, config.bos_token_id, config.pad_token_id
    generator = torch.Generator().manual_seed(seed)
    rows: list[list[int]] = []
    for length in (target, max(target * 2 // 3, one_sided + 4)):
        if tokenizer is not None:
            q = tokenizer(SAMPLE_QUESTION, add_special_tokens=False)["input_ids"]
            c = tokenizer(SAMPLE_CONTEXT, add_special_tokens=False)["input_ids"]
        else:
            specials = {sep, cls, pad, config.eos_token_id}
            pool = [i for i in range(min(config.vocab_size, 1000)) if i not in specials]
            pick = torch.randint(len(pool), (length,), generator=generator).tolist()
            q, c = [pool[i] for i in pick[:6]], [pool[i] for i in pick[6:]]
        room = length - len(q) - 4
        context = (c * (room // max(len(c), 1) + 1))[:room]
        rows.append([cls, *q, sep, sep, *context, sep])
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def question_global_mask(input_ids: Any, sep_token_id: int) -> Any:
    """Global attention on the question: every token before the first separator (as HF's QA model does)."""
    import torch

    first_sep = (input_ids == sep_token_id).int().argmax(dim=1, keepdim=True)
    positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
    return (positions < first_sep).long()


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, or ``None`` when it has no tokenizer files."""
    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def reference_outputs(tensors: Mapping[str, Any], config: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the LightningModule computed: the checkpoint's encoder, then its linear head, in float32."""
    import torch
    from transformers import LongformerModel

    encoder_state = {
        k[len(ENCODER_TARGET) :]: v.float() if v.is_floating_point() else v
        for k, v in tensors.items()
        if k.startswith(ENCODER_TARGET)
    }
    with torch.device("meta"):
        encoder = LongformerModel(config, add_pooling_layer=False)
    encoder.load_state_dict(encoder_state, strict=True, assign=True)
    encoder.eval()
    weight, bias = tensors[HEAD_TARGET + "weight"].float(), tensors[HEAD_TARGET + "bias"].float()
    global_mask = question_global_mask(inputs["input_ids"], config.sep_token_id)
    with torch.inference_mode():
        hidden = encoder(**inputs, global_attention_mask=global_mask).last_hidden_state
        logits = torch.nn.functional.linear(hidden, weight, bias)
    start, end = logits.split(1, dim=-1)
    return {"start_logits": start.squeeze(-1).contiguous(), "end_logits": end.squeeze(-1).contiguous()}


def quiet_transformers() -> None:
    """Keep transformers' progress bars and padding notices out of the log (stages log their own lines)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def module_reference(spec: str, checkpoint: Path) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """The user's own LightningModule, loaded from the checkpoint, as the reference (runs user code).

    ``spec`` is ``package.module:Class``. The module's ``forward(input_ids=..., attention_mask=...,
    global_attention_mask=...)`` must return the start and end logits: a pair of tensors, an object
    with ``start_logits`` and ``end_logits``, or one tensor whose last dimension is 2.

    Raises:
        ConversionError: the class cannot be imported or loaded, or its forward returns something else.
    """
    import importlib

    import torch

    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ConversionError(
            f"--lightning-module '{spec}' is not of the form package.module:Class", "write it as my_pkg.qa:QAModule"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConversionError(
            f"cannot import --lightning-module {spec} ({exc})",
            "install the package that defines the LightningModule, or put its folder on PYTHONPATH",
        ) from None
    try:
        model = cls.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # user code: any failure is the user's to see, on one line
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise ConversionError(
            f"{spec}.load_from_checkpoint failed ({type(exc).__name__}: {first})",
            "check that --lightning-module is the class that wrote this checkpoint",
        ) from None
    model.eval()

    def run(inputs: Mapping[str, Any], global_mask: Any) -> dict[str, Any]:
        with torch.inference_mode():
            out = model(**inputs, global_attention_mask=global_mask)
        if isinstance(out, (tuple, list)) and len(out) == 2:
            start, end = out
        elif hasattr(out, "start_logits") and hasattr(out, "end_logits"):
            start, end = out.start_logits, out.end_logits
        elif isinstance(out, torch.Tensor) and out.shape[-1] == 2:
            start, end = (x.squeeze(-1) for x in out.split(1, dim=-1))
        else:
            raise ConversionError(
                f"{spec}.forward returned {type(out).__name__}, not start and end logits",
                "return (start_logits, end_logits) from forward",
            )
        return {"start_logits": start.float().contiguous(), "end_logits": end.float().contiguous()}

    return run


def candidate_model(folder: Path) -> tuple[Any, dict[str, list[str]]]:
    """The folder as a downstream job loads it, in float32 and eval mode, with its loading info."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    quiet_transformers()
    model, info = AutoModelForQuestionAnswering.from_pretrained(folder, output_loading_info=True, dtype=torch.float32)
    model.eval()
    loading = {
        k: sorted(str(x) for x in info.get(k, [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    return model, loading


def compare_outputs(reference: Mapping[str, Any], candidate: Any, atol: float) -> tuple[list[OutputDiff], list[str]]:
    """Compare outputs by name, then shape, then values (max absolute and relative difference)."""
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
        delta = (got.double() - ref.double()).abs()
        max_abs = float(delta.max()) if delta.numel() else 0.0
        max_rel = float((delta / ref.double().abs().clamp_min(1e-12)).max()) if delta.numel() else 0.0
        passed = max_abs <= atol
        diffs.append(OutputDiff(name, list(ref.shape), max_abs, max_rel, atol, passed))
        if not passed:
            failures.append(f"output '{name}' differs by {max_abs:.3g} (tolerance {atol:g})")
    return diffs, failures


def decode_answer(tokenizer: Any, input_ids: Any, start_logits: Any, end_logits: Any, *, max_answer: int = 30) -> str:
    """The best answer span in the context (after the question) of one sample, decoded."""
    ids = input_ids.tolist()
    sep = tokenizer.sep_token_id
    context_start = ids.index(sep) + 2 if sep in ids else 1
    context_end = len(ids) - 1 - ids[::-1].index(sep) if sep in ids else len(ids)
    best, span = float("-inf"), (context_start, context_start)
    starts, ends = start_logits.tolist(), end_logits.tolist()
    for s in range(context_start, context_end):
        for e in range(s, min(s + max_answer, context_end)):
            if starts[s] + ends[e] > best:
                best, span = starts[s] + ends[e], (s, e)
    return tokenizer.decode(ids[span[0] : span[1] + 1]).strip()


def answer_question(folder: Path, question: str, context: str) -> str:
    """Answer a question with a converted folder, the way a downstream job would."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder)
    model.eval()
    encoded = tokenizer(question, context, return_tensors="pt")
    with torch.inference_mode():
        out = model(**encoded)
    return decode_answer(tokenizer, encoded["input_ids"][0], out.start_logits[0], out.end_logits[0])


def run_check(
    folder: Path,
    ckpt: Checkpoint,
    mapping: KeyMapping,
    config: Any,
    *,
    dtype: str = "keep",
    atol: float | None = None,
    lightning_module: str | None = None,
) -> CheckResult:
    """Check a folder against the checkpoint it was converted from.

    Args:
        folder: the converted folder (config.json, weights, maybe tokenizer files).
        ckpt: the checkpoint, read with ``read_checkpoint``.
        mapping: how the checkpoint's keys map to the folder's.
        config: the model config (the folder's own ``config.json`` is what the candidate uses).
        dtype: the ``--dtype`` the conversion used (``keep`` when verifying an existing folder
            whose dtype matches the checkpoint's).
        atol: absolute tolerance on the logits; default by saved dtype (``DEFAULT_ATOL``).
        lightning_module: ``package.module:Class`` whose forward is the reference (see
            ``module_reference``; runs user code); default: the checkpoint's encoder and head.

    Returns:
        The ``CheckResult``; ``passed`` is false when anything differs.
    """
    import torch

    start = time.perf_counter()
    stored = saved_dtype(folder)
    tolerance = atol if atol is not None else DEFAULT_ATOL.get(stored, 1e-5)
    result = CheckResult(passed=False, dtype=stored, atol=tolerance)
    tensors = mapped_tensors(ckpt, mapping)

    result.tensors_compared, result.tensor_failures = compare_tensors(folder, tensors, dtype)
    result.failures.extend(result.tensor_failures)

    tokenizer = load_tokenizer(folder)
    inputs = make_inputs(config, tokenizer)
    result.inputs = {
        "batch": int(inputs["input_ids"].shape[0]),
        "lengths": [int(n) for n in inputs["attention_mask"].sum(dim=1)],
        "padded_to": int(inputs["input_ids"].shape[1]),
        "attention_window": attention_window(config),
        "tokenizer": tokenizer is not None,
    }
    if lightning_module is None:
        reference_logits = reference_outputs(tensors, config, inputs)
        result.inputs["reference"] = "the checkpoint's encoder and linear head"
    else:
        reference = module_reference(lightning_module, ckpt.path)
        reference_logits = reference(inputs, question_global_mask(inputs["input_ids"], config.sep_token_id))
        result.inputs["reference"] = "the LightningModule's forward"
    del tensors
    gc.collect()

    try:
        model, result.loading = candidate_model(folder)
    except Exception as exc:  # a folder that does not load is a failed check, whatever the reason
        result.failures.append(f"the folder does not load with from_pretrained: {str(exc).splitlines()[0][:200]}")
        result.seconds = time.perf_counter() - start
        return result
    for kind, keys in result.loading.items():
        if keys:
            result.failures.append(f"from_pretrained reports {kind.replace('_', ' ')}: {', '.join(keys[:5])}")
    with torch.inference_mode():
        candidate = model(**inputs)
    result.outputs, failures = compare_outputs(reference_logits, candidate, tolerance)
    result.failures.extend(failures)

    if tokenizer is not None:
        answer = decode_answer(tokenizer, inputs["input_ids"][0], candidate.start_logits[0], candidate.end_logits[0])
        result.answer = {"question": SAMPLE_QUESTION, "answer": answer}
    del model
    gc.collect()
    result.passed = not result.failures
    result.seconds = time.perf_counter() - start
    return result
