"""The check's reference: the checkpoint's own tensors run outside the converted folder.

The encoder in transformers' base class, then the head's arithmetic written with
``torch.nn.functional`` (registered per task, ``@head_arithmetic``), independent of the task's class;
or the user's LightningModule; or peft's unmerged adapter model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from ..mapping.adapters import unmerged_model
from ..mapping.plan import AdapterState
from ..registry import tasks
from ..registry.families import FAMILIES, config_value
from ..registry.tasks import Task
from ..text import described, first_line

#: A task's head arithmetic: ``(tensors by class key, encoder outputs, config) -> outputs`` (float32).
HeadArithmetic = Callable[[Mapping[str, Any], Mapping[str, Any], Any], dict[str, Any]]

#: (family, task name) to the head's arithmetic, filled by ``@head_arithmetic``.
HEAD_ARITHMETIC: dict[tuple[str, str], HeadArithmetic] = {}


def head_arithmetic(name: str, family: str = "longformer") -> Callable[[HeadArithmetic], HeadArithmetic]:
    """Register the decorated function as the head arithmetic of the task ``name`` of ``family``."""

    def register(function: HeadArithmetic) -> HeadArithmetic:
        HEAD_ARITHMETIC[(family, name)] = function
        return function

    return register


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

    family = FAMILIES[task.family]
    prefix = tasks.base_model_prefix(task)
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
    positions = ", ".join(f"{p} {getattr(config, p, None)}" for p in FAMILIES[task.family].positions)
    try:
        out = encoder_outputs(floats, task, config, inputs, global_mask)
        arithmetic = HEAD_ARITHMETIC[(task.family, task.name)]
        with torch.inference_mode():
            return {k: v.contiguous() for k, v in arithmetic(floats, out, config).items()}
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        first = first_line(exc)
        raise ConversionError(
            f"the checkpoint's own weights do not run with the base config (attention_window "
            f"{config_value(config, 'attention_window')}, {positions}): "
            f"{type(exc).__name__}: {first}",
            "pass --base-model with the config the model was trained from",
        ) from None


@dataclass(frozen=True)
class Reference:
    """What the check's reference runs (``description``, for the report) and how (``run``)."""

    description: str

    def run(self, inputs: Mapping[str, Any], global_mask: Any) -> dict[str, Any]:
        """The task's outputs (float32, by ``Task.outputs`` name) on the check's inputs."""
        raise NotImplementedError


@dataclass(frozen=True)
class HeadReference(Reference):
    """The checkpoint's own tensors: the encoder in the family's base class, then the head's arithmetic."""

    tensors: Mapping[str, Any] = field(repr=False, default_factory=dict)
    task: Task | None = None
    config: Any = None
    description: str = "the checkpoint's encoder and head arithmetic"

    def run(self, inputs: Mapping[str, Any], global_mask: Any) -> dict[str, Any]:
        assert self.task is not None
        return reference_outputs(self.tensors, self.task, self.config, inputs, global_mask)


@dataclass(frozen=True)
class AdapterReference(Reference):
    """peft's unmerged adapter model, rebuilt from the plan's adapter weights (not the merged ones, which
    would check the merge against itself)."""

    task: Task | None = None
    config: Any = None
    adapters: AdapterState | None = None
    description: str = "the unmerged adapter model, as peft computes it"

    def run(self, inputs: Mapping[str, Any], global_mask: Any) -> dict[str, Any]:
        import torch

        assert self.task is not None and self.adapters is not None
        model = unmerged_model(self.task, self.config, self.adapters.adapter_config, self.adapters.state)
        names = [n for n in self.task.outputs if n != "pooler_output"]
        try:
            with torch.inference_mode():
                out = model(**inputs, global_attention_mask=global_mask)
        except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
            raise ConversionError(
                f"the unmerged adapter model does not run with the base config: {type(exc).__name__}: "
                f"{first_line(exc)}",
                "pass --base-model with the config the model was trained from",
            ) from None
        return {n: getattr(out, n).float().contiguous() for n in names}


@dataclass(frozen=True)
class ModuleReference(Reference):
    """The user's own LightningModule, loaded from the checkpoint (runs user code).

    ``spec`` is ``package.module:Class``. The module's ``forward(input_ids=..., attention_mask=...,
    global_attention_mask=...)`` must return the task's outputs (``Task.outputs``): an object with
    those attributes, a tuple in that order, or one tensor (for question answering, one tensor whose
    last dimension is 2 is split into start and end logits).
    """

    spec: str = ""
    model: Any = field(default=None, repr=False)
    names: tuple[str, ...] = ()
    description: str = "the LightningModule's forward"

    def run(self, inputs: Mapping[str, Any], global_mask: Any) -> dict[str, Any]:
        import torch

        spec, names = self.spec, list(self.names)
        try:
            with torch.inference_mode():
                out = self.model(**inputs, global_attention_mask=global_mask)
        except Exception as exc:  # user code: its failure is the user's to see, on one line
            raise ConversionError(
                f"{spec}.forward failed on the check's inputs ({described(exc)})",
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


def module_reference(spec: str, checkpoint: Path, task: Task) -> ModuleReference:
    """Load the user's LightningModule ``spec`` (``package.module:Class``) from ``checkpoint`` as the reference.

    Raises:
        ConversionError: the class cannot be imported or loaded.
    """
    import importlib

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
        first = first_line(exc, fallback="")
        raise ConversionError(
            f"{spec}.load_from_checkpoint failed ({type(exc).__name__}: {first})",
            "check that --lightning-module is the class that wrote this checkpoint",
        ) from None
    model.eval()
    return ModuleReference(spec=spec, model=model, names=tuple(n for n in task.outputs if n != "pooler_output"))


@head_arithmetic("question-answering")
def _qa_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    logits = F.linear(out["last_hidden_state"], head["qa_outputs.weight"], head["qa_outputs.bias"])
    start, end = logits.split(1, dim=-1)
    return {"start_logits": start.squeeze(-1).contiguous(), "end_logits": end.squeeze(-1).contiguous()}


@head_arithmetic("text-classification")
def _text_classification_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    first = out["last_hidden_state"][:, 0]
    x = torch.tanh(F.linear(first, head["classifier.dense.weight"], head["classifier.dense.bias"]))
    return {"logits": F.linear(x, head["classifier.out_proj.weight"], head["classifier.out_proj.bias"])}


@head_arithmetic("token-classification")
def _token_classification_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    return {"logits": F.linear(out["last_hidden_state"], head["classifier.weight"], head["classifier.bias"])}


@head_arithmetic("multiple-choice")
def _multiple_choice_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    logits = F.linear(out["pooler_output"], head["classifier.weight"], head["classifier.bias"])
    return {"logits": logits.view(-1, out["num_choices"])}


@head_arithmetic("fill-mask")
def _fill_mask_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    x = F.gelu(F.linear(out["last_hidden_state"], head["lm_head.dense.weight"], head["lm_head.dense.bias"]))
    x = F.layer_norm(
        x,
        (x.shape[-1],),
        head["lm_head.layer_norm.weight"],
        head["lm_head.layer_norm.bias"],
        config_value(config, "layer_norm_eps"),
    )
    decoder = head.get("lm_head.decoder.weight", head["longformer.embeddings.word_embeddings.weight"])
    return {"logits": F.linear(x, decoder, head.get("lm_head.decoder.bias", head["lm_head.bias"]))}


@head_arithmetic("feature-extraction")
def _feature_extraction_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    result = {"last_hidden_state": out["last_hidden_state"]}
    if out.get("pooler_output") is not None:
        result["pooler_output"] = out["pooler_output"]
    return result


@head_arithmetic("text2text-generation", family="led")
def _text2text_reference(head: Mapping[str, Any], out: Mapping[str, Any], config: Any) -> dict[str, Any]:
    import torch.nn.functional as F

    weight = head.get("lm_head.weight", head["led.shared.weight"])
    return {"logits": F.linear(out["last_hidden_state"], weight) + head["final_logits_bias"]}


@head_arithmetic("feature-extraction", family="led")
def _seq2seq_feature_extraction_reference(
    head: Mapping[str, Any], out: Mapping[str, Any], config: Any
) -> dict[str, Any]:
    return {
        "last_hidden_state": out["last_hidden_state"],
        "encoder_last_hidden_state": out["encoder_last_hidden_state"],
    }


assert set(HEAD_ARITHMETIC) == {(t.family, t.name) for t in tasks.ENTRIES}, "a task without head arithmetic"
