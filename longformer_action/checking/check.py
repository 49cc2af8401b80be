"""Run the check: prove a folder computes what the checkpoint computed, and that its other files are right.

Reference: the checkpoint's own tensors in transformers' ``LongformerModel`` (the encoder) followed by
the head's arithmetic written with ``torch.nn.functional`` (registered per task in
``reference.py``; for LED, ``LEDModel``
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
from pathlib import Path
from typing import Any

from ..mapping.plan import Plan
from ..quiet import quiet_transformers
from ..reading.checkpoint import Checkpoint
from ..registry.attention import global_attention_mask
from ..registry.families import sep_token_id
from ..registry.files import CUSTOM_HEAD_NAME
from ..registry.tasks import Task
from ..text import described, listing
from ..writing.folder import mapped_tensors
from .compare import compare_outputs, compare_tensors
from .inputs import attention_window, make_inputs
from .reference import AdapterReference, HeadReference, Reference, module_reference
from .result import CheckResult
from .settings import generation_check, recorded_config_check
from .smoke import smoke_test
from .tokenizer import load_tokenizer, tokenizer_check

#: Default absolute tolerance on the logits, by the dtype the weights were saved in. float32 weights
#: are bit-identical to the checkpoint's and run the same kernels, so the difference is 0 in
#: practice; 1e-5 is optimum's default and leaves room for kernel differences across machines.
#: float16 keeps ~3 significant digits per weight and bfloat16 ~2; the rounding adds up across
#: layers, so their bounds are wider (a wrong weight still moves logits by far more).
DEFAULT_ATOL = {"float32": 1e-5, "float64": 1e-7, "float16": 1e-2, "bfloat16": 5e-2}


def saved_dtype(folder: Path) -> str:
    """The floating dtype the folder's weights are stored in (``float32`` when unknown)."""
    config = json.loads((folder / "config.json").read_text())
    value = config.get("dtype") or config.get("torch_dtype") or "float32"
    return str(value).removeprefix("torch.")


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


def run_check(
    folder: Path,
    ckpt: Checkpoint,
    plan: Plan,
    *,
    dtype: str = "keep",
    atol: float | None = None,
    lightning_module: str | None = None,
    base: Any = None,
) -> CheckResult:
    """Check a folder against the checkpoint it was converted from.

    Args:
        folder: the converted folder (config.json, weights, maybe tokenizer files).
        ckpt: the checkpoint, read with ``read_checkpoint``.
        plan: the map stage's plan: how the checkpoint's keys map to the folder's, the task's config
            (the folder's own ``config.json`` is what the candidate uses), the global attention the
            module trained with (where it is not the class's default, the candidate is called with
            that mask explicitly), and the unmerged LoRA adapters whose peft model is then the
            reference (``AdapterReference``).
        dtype: the ``--dtype`` the conversion used (``keep`` when verifying an existing folder
            whose dtype matches the checkpoint's).
        atol: absolute tolerance on the outputs; default by saved dtype (``DEFAULT_ATOL``).
        lightning_module: ``package.module:Class`` whose forward is the reference (see
            ``module_reference``; runs user code); default: the checkpoint's encoder and head.
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
    task, mapping, config = plan.task, plan.mapping, plan.config
    convention = plan.facts.global_attention.convention
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
    global_mask = global_attention_mask(convention, inputs["input_ids"], sep_token_id(config))
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
    reference: Reference
    if plan.adapters is not None:
        reference = AdapterReference(task=task, config=config, adapters=plan.adapters)
    elif lightning_module is None:
        reference = HeadReference(tensors=tensors, task=task, config=config)
    else:
        reference = module_reference(lightning_module, ckpt.path, task)
    reference_logits = reference.run(inputs, global_mask)
    result.inputs["reference"] = reference.description
    del tensors, reference
    gc.collect()

    try:
        model, result.loading = candidate_model(folder, task)
    except Exception as exc:  # a folder that does not load is a failed check, whatever the reason
        result.failures.append(f"the folder does not load with from_pretrained: {described(exc)}")
        result.seconds = time.perf_counter() - start
        return result
    # a class that keeps the pooler when present (LongformerModel) always builds one
    allowed = {"pooler.dense.weight", "pooler.dense.bias"} if task.pooler is None and not mapping.has_pooler else set()
    for kind, keys in result.loading.items():
        shown = [k for k in keys if k not in allowed]
        if shown:
            result.failures.append(f"from_pretrained reports {kind.replace('_', ' ')}: {listing(shown, 5)}")
    result.add(generation_check(model, base))
    try:
        with torch.inference_mode():
            candidate = model(**inputs, **({"global_attention_mask": global_mask} if explicit else {}))
    except Exception as exc:  # the folder's own config or weights make its forward fail: a failed check
        result.failures.append(f"the folder's model fails on the check's inputs: {described(exc)}")
    else:
        result.outputs, failures = compare_outputs(reference_logits, candidate, tolerance)
        result.failures.extend(failures)
        if not failures:
            try:
                result.smoke = smoke_test(task, model, tokenizer, convention)
            except Exception as exc:  # the sample is for people; its failure is one line of the report
                result.smoke = {"error": described(exc)}
    del model
    gc.collect()
    result.passed = not result.failures
    result.seconds = time.perf_counter() - start
    return result
