"""Prove a folder computes what the checkpoint computed: a per-tensor check and a forward-pass check.

Reference: the checkpoint's own tensors in transformers' ``LongformerModel`` (the encoder) followed by
the head's arithmetic written with ``torch.nn.functional`` (``Task.reference``; for LED, ``LEDModel``
then the LM head: ``F.linear(decoder_hidden, lm_head) + final_logits_bias``), with the global
attention the module trained with. Candidate: the folder reloaded from disk with the task's
``AutoModelFor...`` class, sharing nothing with the conversion's objects. Both run on inputs that
fit the task (question and context pairs, single texts, masked texts, a choices dimension), a batch
of two with padding, longer than one attention window, so that the sliding window and the global
attention both run.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import tasks
from .checkpoint import Checkpoint
from .convert import CUSTOM_HEAD_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, mapped_tensors, target_dtype
from .errors import ConversionError
from .mapping import KeyMapping
from .tasks import Task

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
SAMPLE_CHOICES = ("In Paris, on the Champ de Mars.", "In Rome, beside the Colosseum.", "In Berlin, near the river.")
#: The smoke test's input per input kind (``Task.inputs``).
SAMPLE_TEXT = "The Eiffel Tower stands in Paris, on the Champ de Mars, and Gustave Eiffel's company built it."
SAMPLE_MASKED = "The Eiffel Tower stands in {mask}, on the Champ de Mars."
#: The target of the ``seq2seq`` inputs (teacher forcing: the decoder reads it shifted right).
SAMPLE_SUMMARY = "The Eiffel Tower is in Paris."
#: Tokens the smoke test generates (greedy).
SMOKE_NEW_TOKENS = 8


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
class NamedCheck:
    """One of the check's stages beside the tensors and the outputs: what it proved, and about which files.

    Attributes:
        name: ``tokenizer``, ``generation settings`` or ``recorded config``.
        files: the folder's files it reads.
        passed: ``True`` or ``False``; ``None`` when there was nothing to compare (``detail`` says why).
        detail: what was compared, for people.
        failures: one line per difference, naming the file and the field.
    """

    name: str
    files: list[str]
    passed: bool | None
    detail: str
    failures: list[str] = field(default_factory=list)


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
    smoke: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checks: list[NamedCheck] = field(default_factory=list)

    def add(self, check: NamedCheck | None) -> None:
        """Record a named stage; its failures become the check's."""
        if check is not None:
            self.checks.append(check)
            self.failures.extend(check.failures)

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
    for path in files if files is not None else _weight_files(folder):
        if not path.is_file():
            failures.append(f"weights file {path.name} is missing")
            continue
        try:
            opened = safe_open(path, framework="pt")
        except Exception as exc:  # a cut or corrupt file is a failed check, not a crash
            failures.append(f"weights file {path.name} cannot be read ({_first_line(exc)})")
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


def attention_window(config: Any) -> int:
    """The widest (two-sided) attention window over the layers."""
    window = tasks.config_value(config, "attention_window")
    return int(max(window)) if isinstance(window, (list, tuple)) else int(window)


def _token_pool(config: Any, tokenizer: Any, text: str, generator: Any, count: int) -> list[int]:
    import torch

    if tokenizer is not None:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    roles = ("sep_token_id", "bos_token_id", "pad_token_id", "eos_token_id")
    specials = {tasks.config_value(config, role) for role in roles}
    pool = [i for i in range(min(tasks.config_value(config, "vocab_size"), 1000)) if i not in specials]
    return [pool[i] for i in torch.randint(len(pool), (count,), generator=generator).tolist()]


def _fill(tokens: list[int], room: int) -> list[int]:
    return (tokens * (room // max(len(tokens), 1) + 1))[:room]


def _pad(rows: list[list[int]], pad: int, width: int | None = None) -> tuple[Any, Any]:
    import torch

    width = width or max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def make_inputs(task: Task, config: Any, tokenizer: Any = None, *, seed: int = 0) -> dict[str, Any]:
    """The check's inputs for ``task``: a batch of two samples of different lengths, padded.

    Both are longer than the one-sided attention window, so the sliding window decides what each
    token sees. By ``Task.inputs``: ``pair`` is ``<s> question </s></s> context </s>`` (exactly three
    separators, as ``LongformerForQuestionAnswering`` requires); ``text`` is ``<s> text </s>``;
    ``masked`` is a text with every fifth token replaced by ``<mask>`` (when the tokenizer has one);
    ``choices`` gives ``input_ids`` of shape ``(2, 3, seq)``: a question paired with three choices;
    ``seq2seq`` is ``text`` plus teacher-forced decoder inputs: ``decoder_input_ids`` are the target
    ``SAMPLE_SUMMARY </s>`` shifted right after ``decoder_start_token_id`` (two target lengths, padded).
    Without a tokenizer, token ids come from a seeded generator.

    Returns:
        ``input_ids`` and ``attention_mask``, int64 tensors of shape ``(2, seq)`` (``(2, 3, seq)``
        for ``choices``); for ``seq2seq`` also ``decoder_input_ids`` and ``decoder_attention_mask``
        ``(2, target)``.
    """
    import torch

    family = tasks.family_of_config(config)
    window = attention_window(config)
    max_len = family.max_source_tokens(config)
    # Longformer pads to a multiple of ``window``, so this costs one window of compute per sample
    one_sided = window // 2
    target = min(max(one_sided + one_sided // 2 + 8, 48), max_len)
    sep, cls, pad = (family.value(config, role) for role in ("sep_token_id", "bos_token_id", "pad_token_id"))
    generator = torch.Generator().manual_seed(seed)
    lengths = (target, max(target * 2 // 3, one_sided + 4))
    question = _token_pool(config, tokenizer, SAMPLE_QUESTION, generator, 6)
    if task.inputs == "choices":
        samples = []
        for length in lengths:
            rows = []
            for choice in SAMPLE_CHOICES:
                c = _token_pool(config, tokenizer, choice + " " + SAMPLE_CONTEXT, generator, length)
                rows.append([cls, *question, sep, sep, *_fill(c, length - len(question) - 4), sep])
            samples.append(rows)
        width = max(len(r) for rows in samples for r in rows)
        padded = [_pad(rows, pad, width) for rows in samples]
        return {"input_ids": torch.stack([p[0] for p in padded]), "attention_mask": torch.stack([p[1] for p in padded])}
    rows: list[list[int]] = []
    for length in lengths:
        if task.inputs == "pair":
            c = _token_pool(config, tokenizer, SAMPLE_CONTEXT, generator, length)
            rows.append([cls, *question, sep, sep, *_fill(c, length - len(question) - 4), sep])
        else:
            t = _fill(_token_pool(config, tokenizer, SAMPLE_TEXT + " " + SAMPLE_CONTEXT, generator, length), length - 2)
            mask_id = getattr(tokenizer, "mask_token_id", None)
            if task.inputs == "masked" and mask_id is not None:
                t = [mask_id if i % 5 == 2 else tok for i, tok in enumerate(t)]
            rows.append([cls, *t, sep])
    input_ids, attention_mask = _pad(rows, pad)
    if task.inputs != "seq2seq":
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    room = max(min(12, family.value(config, "max_target_positions") - 1), 3)
    summary = _token_pool(config, tokenizer, SAMPLE_SUMMARY, generator, room)
    eos, start = family.value(config, "eos_token_id"), family.value(config, "decoder_start_token_id")
    targets = [[*_fill(summary, n - 1), eos] for n in (room, max(room * 2 // 3, 2))]
    shifted = [[start, *t[:-1]] for t in targets]
    decoder_input_ids, decoder_attention_mask = _pad(shifted, pad)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": decoder_attention_mask,
    }


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, or ``None`` when it has no tokenizer files (or they do not load: the
    tokenizer stage says why)."""
    from .tokenization import tokenizer_files

    if not tokenizer_files(folder):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception:  # the tokenizer stage reports it, naming the files
        return None


def tokenizer_check(folder: Path, base: Any, config: Any) -> NamedCheck:
    """The folder's tokenizer, from ``tokenizer.json`` and from its legacy files alone, against the base's.

    Both encode the check's sample texts (special tokens, ``<mask>``, a text pair, non-ASCII text, a
    padded batch, a text longer than the positions, truncated); every id, mask and decoded text must be
    the same. ``model_max_length`` must be the base's capped to the positions the model can use.
    Without a base (``verify`` without ``--base-model``) only the cap is checked.

    Raises:
        BaseModelError: the base's tokenizer files do not load.
    """
    from transformers import AutoTokenizer

    from .tokenization import (
        check_max_length,
        compare_encodings,
        legacy_copy,
        legacy_names,
        load_base_tokenizer,
        tokenizer_files,
        usable_positions,
    )

    files = [p.name for p in tokenizer_files(folder)]
    base_files = list(base.tokenizer_files) if base is not None else []
    if not files:
        if base_files:
            names = ", ".join(p.name for p in base_files)
            return NamedCheck("tokenizer", [], False, "", [f"the folder has no tokenizer, the base has one ({names})"])
        why = "the folder has none" if base is None else "the base model has no tokenizer files"
        return NamedCheck("tokenizer", [], None, f"no tokenizer: {why}")
    try:
        mine = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # a folder whose tokenizer does not load fails the check
        return NamedCheck("tokenizer", files, False, "", [f"{', '.join(files)}: do not load ({_first_line(exc)})"])
    positions = usable_positions(config)
    source = "tokenizer.json" if "tokenizer.json" in files else ", ".join(files)
    if not base_files:
        failures = check_max_length(mine, mine.model_max_length, positions)
        return NamedCheck(
            "tokenizer", files, not failures, "loads; not compared with a base model's (no --base-model)", failures
        )
    theirs = load_base_tokenizer(base.folder, base_files, config)
    count, failures = compare_encodings(mine, theirs, positions, source=source)
    failures += check_max_length(mine, theirs.model_max_length, positions)
    legacy = legacy_names(folder)
    with legacy_copy(folder) as copy:
        if copy is not None:
            try:
                old = AutoTokenizer.from_pretrained(copy)
            except Exception as exc:  # legacy files that do not load fail the check
                failures.append(f"{', '.join(legacy)}: do not load without tokenizer.json ({_first_line(exc)})")
            else:
                failures += compare_encodings(old, theirs, positions, source=", ".join(legacy))[1]
    detail = (
        f"{count} encodings equal to the base's ({type(theirs).__name__}) from {source}"
        + (f" and from {', '.join(legacy)} alone" if legacy else "")
        + f"; model_max_length {mine.model_max_length} ({positions} positions)"
    )
    return NamedCheck("tokenizer", files, not failures, detail, failures)


def generation_check(model: Any, base: Any) -> NamedCheck | None:
    """The generation settings the folder's model loaded, field by field against the base's effective ones.

    ``None`` for a class that does not generate. Without a base only ``_from_model_config`` is checked.
    """
    from .convert import base_generation
    from .generation import GENERATION_CONFIG_NAME, compare_settings, non_default

    if not model.can_generate():
        return None
    if base is None:
        failures = compare_settings(model.generation_config, model.generation_config)
        return NamedCheck(
            "generation settings",
            [GENERATION_CONFIG_NAME],
            not failures,
            "not compared with a base model's (no --base-model)",
            failures,
        )
    theirs = base_generation(base)
    failures = compare_settings(model.generation_config, theirs)
    shown = ", ".join(f"{k} {v!r}" for k, v in non_default(theirs).items())
    return NamedCheck(
        "generation settings",
        [GENERATION_CONFIG_NAME],
        not failures,
        f"every field equal to the base's effective settings ({shown or 'the defaults'})",
        failures,
    )


def recorded_config_check(folder: Path, ckpt: Checkpoint, task: Task) -> NamedCheck:
    """The folder's ``config.json`` against every config value the checkpoint's hyper-parameters record."""
    from .selection import recorded_config_check as compare
    from .selection import recorded_problem_type

    try:
        config = tasks.FAMILIES[task.family].config_cls().from_pretrained(folder)
    except Exception as exc:  # a config.json transformers cannot read fails the check
        return NamedCheck("recorded config", ["config.json"], False, "", [f"config.json: {_first_line(exc)}"])
    compared, failures = compare(ckpt.hparams, config)
    recorded = recorded_problem_type(ckpt.hparams) if task.problem_type else None
    if recorded is not None:
        compared.append(f"problem_type ({recorded[1]})")
        if config.problem_type != recorded[0]:
            failures.append(
                f"config.json: problem_type is {config.problem_type!r} where {recorded[1]} records {recorded[0]!r}"
            )
    if not compared:
        return NamedCheck("recorded config", ["config.json"], None, "the hyper-parameters record no config field")
    return NamedCheck("recorded config", ["config.json"], not failures, "; ".join(compared), failures)


def encoder_outputs(
    tensors: Mapping[str, Any], task: Task, config: Any, inputs: Mapping[str, Any], global_mask: Any
) -> dict[str, Any]:
    """The checkpoint's base model run in the family's base class (float32), the pooler by hand.

    The base class is ``LongformerModel`` (no pooler) or, for LED, ``LEDModel`` (encoder and
    decoder, the decoder teacher-forced by ``decoder_input_ids``); tied copies the folder saves once
    must be in ``tensors`` (see ``reference_outputs``).

    Returns:
        ``last_hidden_state`` ``(batch, seq, hidden)`` (choices flattened into the batch; LED: the
        decoder's, ``(batch, target, hidden)``), ``encoder_last_hidden_state`` (LED; else ``None``),
        ``pooler_output`` ``(batch, hidden)`` (``tanh(dense(h[:, 0]))``, as ``LongformerPooler``;
        ``None`` without pooler weights) and ``num_choices`` (``None`` without a choices dimension).
    """
    import torch
    import torch.nn.functional as F

    family = tasks.FAMILIES[task.family]
    prefix = tasks.encoder_target(task)
    state = {
        k[len(prefix) :]: v.float() if v.is_floating_point() else v
        for k, v in tensors.items()
        if k.startswith(prefix)
        and not k[len(prefix) :].startswith(("pooler.", "lm_head.", "classifier.", "qa_outputs.", "final_logits_bias"))
    }
    with torch.device("meta"):
        encoder = family.base_model_class()(config, **family.base_kwargs)
    encoder.load_state_dict(state, strict=True, assign=True)
    encoder.eval()
    ids = inputs["input_ids"]
    num_choices = ids.shape[1] if ids.dim() == 3 else None
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    with torch.inference_mode():
        out = encoder(**{k: flat(v) for k, v in inputs.items()}, global_attention_mask=flat(global_mask))
        hidden = out.last_hidden_state
        pooled = None
        if f"{prefix}pooler.dense.weight" in tensors:
            w, b = tensors[f"{prefix}pooler.dense.weight"].float(), tensors[f"{prefix}pooler.dense.bias"].float()
            pooled = torch.tanh(F.linear(hidden[:, 0], w, b))
    return {
        "last_hidden_state": hidden,
        "encoder_last_hidden_state": getattr(out, "encoder_last_hidden_state", None),
        "pooler_output": pooled,
        "num_choices": num_choices,
    }


def reference_outputs(
    tensors: Mapping[str, Any], task: Task, config: Any, inputs: Mapping[str, Any], global_mask: Any
) -> dict[str, Any]:
    """What the LightningModule computed: the checkpoint's encoder, then the task's head arithmetic, in float32.

    Tied keys the folder saves once (``Task.tied``) take their source's tensor, as the class ties them.

    Raises:
        ConversionError: the reference itself fails with this config (it names the config's fields).
    """
    import torch

    floats = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    for target, source in task.tied.items():
        if target not in floats and source in floats:
            floats[target] = floats[source]
    positions = ", ".join(f"{p} {getattr(config, p, None)}" for p in tasks.FAMILIES[task.family].positions)
    try:
        out = encoder_outputs(floats, task, config, inputs, global_mask)
        with torch.inference_mode():
            return {k: v.contiguous() for k, v in task.reference(floats, out, config).items()}
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConversionError(
            f"the checkpoint's own weights do not run with the base config (attention_window "
            f"{tasks.config_value(config, 'attention_window')}, {positions}): "
            f"{type(exc).__name__}: {first}",
            "pass --base-model with the config the model was trained from",
        ) from None


def quiet_transformers() -> None:
    """Keep transformers' progress bars and padding notices out of the log (stages log their own lines)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def module_reference(spec: str, checkpoint: Path, task: Task) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """The user's own LightningModule, loaded from the checkpoint, as the reference (runs user code).

    ``spec`` is ``package.module:Class``. The module's ``forward(input_ids=..., attention_mask=...,
    global_attention_mask=...)`` must return the task's outputs (``Task.outputs``): an object with
    those attributes, a tuple in that order, or one tensor (for question answering, one tensor whose
    last dimension is 2 is split into start and end logits).

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
    names = [n for n in task.outputs if n != "pooler_output"]

    def run(inputs: Mapping[str, Any], global_mask: Any) -> dict[str, Any]:
        try:
            with torch.inference_mode():
                out = model(**inputs, global_attention_mask=global_mask)
        except Exception as exc:  # user code: its failure is the user's to see, on one line
            raise ConversionError(
                f"{spec}.forward failed on the check's inputs ({_first_line(exc)})",
                f"its forward must take {', '.join(inputs)} and global_attention_mask as keyword arguments "
                "(global_attention_mask is the mask --global-attention describes)",
            ) from None
        if all(hasattr(out, n) for n in names):
            values = [getattr(out, n) for n in names]
        elif isinstance(out, (tuple, list)) and len(out) == len(names):
            values = list(out)
        elif isinstance(out, torch.Tensor) and len(names) == 1:
            values = [out]
        elif isinstance(out, torch.Tensor) and len(names) == 2 and out.shape[-1] == 2:
            values = [x.squeeze(-1) for x in out.split(1, dim=-1)]
        else:
            raise ConversionError(
                f"{spec}.forward returned {type(out).__name__}, not {', '.join(names)}",
                f"return ({', '.join(names)}) from forward",
            )
        return {n: v.float().contiguous() for n, v in zip(names, values, strict=True)}

    return run


def candidate_model(folder: Path, task: Task) -> tuple[Any, dict[str, list[str]]]:
    """The folder as a downstream job loads it (``Task.auto_class``), float32, eval mode, with its loading info."""
    import torch

    quiet_transformers()
    model, info = task.loader_class().from_pretrained(folder, output_loading_info=True, dtype=torch.float32)
    model.eval()
    loading = {
        k: sorted(str(x) for x in info.get(k, [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    return model, loading


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


def smoke_test(task: Task, model: Any, tokenizer: Any, global_attention: str | None = None) -> dict[str, Any]:
    """Run the loaded folder end to end on a sample, as a downstream job would; a line for people.

    With ``transformers.pipeline(Task.pipeline)`` where transformers 5 has that pipeline; question
    answering decodes the best span; multiple choice picks the best of ``SAMPLE_CHOICES``; a
    ``seq2seq`` model generates exactly ``SMOKE_NEW_TOKENS`` tokens greedily (``generate()``) with the
    ``global_attention`` convention (default: the class's).

    Returns:
        ``{"input": ..., "output": ...}`` (strings), or ``{}`` without a tokenizer.
    """
    import torch

    if tokenizer is None:
        return {}
    if task.inputs == "seq2seq":
        if not hasattr(model, "generate"):
            return {}
        encoded = tokenizer(SAMPLE_TEXT, return_tensors="pt")
        mask = tasks.global_attention_mask(
            global_attention or task.global_attention, encoded["input_ids"], tasks.sep_token_id(model.config)
        )
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                global_attention_mask=mask,
                min_new_tokens=SMOKE_NEW_TOKENS,
                max_new_tokens=SMOKE_NEW_TOKENS,
                do_sample=False,
                num_beams=1,
            )
        ids = out[0].tolist()
        return {"input": SAMPLE_TEXT, "output": f"{tokenizer.decode(ids, skip_special_tokens=True)!r} (tokens {ids})"}
    if task.pipeline is not None:
        from transformers import pipeline

        runner = pipeline(task.pipeline, model=model, tokenizer=tokenizer, device="cpu")
        text = SAMPLE_MASKED.format(mask=tokenizer.mask_token) if task.inputs == "masked" else SAMPLE_TEXT
        out = runner(text)
        if task.inputs == "masked":
            shown = ", ".join(f"{o['token_str'].strip()!r} {o['score']:.2f}" for o in out[:3])
        elif task.pipeline == "feature-extraction":
            shown = f"features of shape {list(torch.tensor(out).shape)}"
        elif isinstance(out, list) and out and "entity" in out[0]:
            shown = ", ".join(f"{o['word'].strip()!r}: {o['entity']}" for o in out[:4]) + (
                " ..." if len(out) > 4 else ""
            )
        else:
            shown = ", ".join(f"{o['label']} {o['score']:.2f}" for o in (out if isinstance(out, list) else [out]))
        return {"input": text, "output": shown}
    if task.inputs == "pair":
        encoded = tokenizer(SAMPLE_QUESTION, SAMPLE_CONTEXT, return_tensors="pt")
        with torch.inference_mode():
            out = model(**encoded)
        answer = decode_answer(tokenizer, encoded["input_ids"][0], out.start_logits[0], out.end_logits[0])
        return {"input": SAMPLE_QUESTION, "output": answer}
    encoded = tokenizer(
        [SAMPLE_QUESTION] * len(SAMPLE_CHOICES), list(SAMPLE_CHOICES), return_tensors="pt", padding=True
    )
    with torch.inference_mode():
        logits = model(**{k: v.unsqueeze(0) for k, v in encoded.items()}).logits[0]
    return {"input": SAMPLE_QUESTION, "output": SAMPLE_CHOICES[int(logits.argmax())]}


def run_check(
    folder: Path,
    ckpt: Checkpoint,
    mapping: KeyMapping,
    config: Any,
    *,
    dtype: str = "keep",
    atol: float | None = None,
    lightning_module: str | None = None,
    global_attention: str = "default",
    reference: Callable[[Mapping[str, Any], Any], dict[str, Any]] | None = None,
    base: Any = None,
) -> CheckResult:
    """Check a folder against the checkpoint it was converted from.

    Args:
        folder: the converted folder (config.json, weights, maybe tokenizer files).
        ckpt: the checkpoint, read with ``read_checkpoint``.
        mapping: how the checkpoint's keys map to the folder's (its ``task`` picks the head).
        config: the model config (the folder's own ``config.json`` is what the candidate uses).
        dtype: the ``--dtype`` the conversion used (``keep`` when verifying an existing folder
            whose dtype matches the checkpoint's).
        atol: absolute tolerance on the outputs; default by saved dtype (``DEFAULT_ATOL``).
        lightning_module: ``package.module:Class`` whose forward is the reference (see
            ``module_reference``; runs user code); default: the checkpoint's encoder and head.
        global_attention: the convention the module trained with (``--global-attention``); where
            it is not the class's default, the candidate is called with that mask explicitly.
        reference: ``run(inputs, global_mask)`` giving the task's outputs, used as the reference
            instead of the checkpoint's encoder and head (the unmerged adapter model of a LoRA
            checkpoint); its ``description`` attribute names it in the report.
        base: the base model (``base_model.BaseModel``) the folder's tokenizer and generation
            settings are compared with; ``None``: only what the folder holds is checked.

    Besides the tensors and the outputs, named stages (``CheckResult.checks``) prove the tokenizer
    (``tokenizer_check``), the generation settings (``generation_check``, for classes that generate)
    and ``config.json`` against the config the hyper-parameters record (``recorded_config_check``).

    Returns:
        The ``CheckResult``; ``passed`` is false when anything differs, or when the folder does not
        load or run (each cause is one line of ``failures``).

    Raises:
        ConversionError: the reference itself cannot run with ``config``, or the base's tokenizer
            files do not load.
    """
    import torch

    start = time.perf_counter()
    task = tasks.get(mapping.task, mapping.family)
    convention = tasks.resolve_global_attention(task, global_attention)
    stored = saved_dtype(folder)
    tolerance = atol if atol is not None else DEFAULT_ATOL.get(stored, 1e-5)
    result = CheckResult(passed=False, dtype=stored, atol=tolerance)
    tensors = mapped_tensors(ckpt, mapping)

    result.tensors_compared, result.tensor_failures = compare_tensors(folder, tensors, dtype)
    if mapping.custom_head:
        kept = {key: ckpt.state_dict[key] for key in mapping.custom_head}
        count, failures = compare_tensors(folder, kept, "keep", files=[folder / CUSTOM_HEAD_NAME])
        result.tensors_compared += count
        result.tensor_failures += failures
    result.failures.extend(result.tensor_failures)
    result.add(tokenizer_check(folder, base, config))
    result.add(recorded_config_check(folder, ckpt, task))

    tokenizer = load_tokenizer(folder)
    inputs = make_inputs(task, config, tokenizer)
    global_mask = tasks.global_attention_mask(convention, inputs["input_ids"], tasks.sep_token_id(config))
    explicit = convention != task.global_attention
    result.inputs = {
        "kind": task.inputs,
        "shape": list(inputs["input_ids"].shape),
        "batch": int(inputs["input_ids"].shape[0]),
        "lengths": [
            int(n) for n in inputs["attention_mask"].reshape(-1, inputs["attention_mask"].shape[-1]).sum(dim=1)
        ],
        "padded_to": int(inputs["input_ids"].shape[-1]),
        "attention_window": attention_window(config),
        "tokenizer": tokenizer is not None,
        "global_attention": convention,
        "global_attention_passed": explicit,
    }
    if reference is not None:
        reference_logits = reference(inputs, global_mask)
        result.inputs["reference"] = getattr(reference, "description", "given by the caller")
    elif lightning_module is None:
        reference_logits = reference_outputs(tensors, task, config, inputs, global_mask)
        result.inputs["reference"] = "the checkpoint's encoder and head arithmetic"
    else:
        reference = module_reference(lightning_module, ckpt.path, task)
        reference_logits = reference(inputs, global_mask)
        result.inputs["reference"] = "the LightningModule's forward"
    del tensors
    gc.collect()

    try:
        model, result.loading = candidate_model(folder, task)
    except Exception as exc:  # a folder that does not load is a failed check, whatever the reason
        result.failures.append(f"the folder does not load with from_pretrained: {_first_line(exc)}")
        result.seconds = time.perf_counter() - start
        return result
    # a class that keeps the pooler when present (LongformerModel) always builds one
    allowed = {"pooler.dense.weight", "pooler.dense.bias"} if task.pooler is None and not mapping.has_pooler else set()
    for kind, keys in result.loading.items():
        shown = [k for k in keys if k not in allowed]
        if shown:
            result.failures.append(f"from_pretrained reports {kind.replace('_', ' ')}: {', '.join(shown[:5])}")
    result.add(generation_check(model, base))
    try:
        with torch.inference_mode():
            candidate = model(**inputs, **({"global_attention_mask": global_mask} if explicit else {}))
    except Exception as exc:  # the folder's own config or weights make its forward fail: a failed check
        result.failures.append(f"the folder's model fails on the check's inputs: {_first_line(exc)}")
    else:
        result.outputs, failures = compare_outputs(reference_logits, candidate, tolerance)
        result.failures.extend(failures)
        if not failures:
            try:
                result.smoke = smoke_test(task, model, tokenizer, convention)
            except Exception as exc:  # the sample is for people; its failure is one line of the report
                result.smoke = {"error": _first_line(exc)}
    del model
    gc.collect()
    result.passed = not result.failures
    result.seconds = time.perf_counter() - start
    return result


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
