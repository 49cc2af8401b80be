"""The map stage's one result, the typed ``Plan``, built by one straight sequence from a checkpoint and a base.

The sequence: the tensors are checked; LoRA adapters are found (and their merged shapes used);
``--drop``, ``--keep`` and ``--copy`` set keys aside; the keys are mapped and the task read; the
task's config is built from the base's with its labels and ``problem_type``; it is compared with
the config the hyper-parameters record; adapters are merged; tied weights are resolved; the keys
are checked against the class. Later stages read the ``Plan``; none of them re-decides any of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import MappingError
from ..reading.base_model import BaseModel
from ..reading.checkpoint import Checkpoint
from ..registry import tasks
from ..registry.attention import GLOBAL_ATTENTION_CALLS
from ..registry.files import CUSTOM_HEAD_NAME
from ..registry.tasks import Task, resolve_global_attention
from . import adapters, selection
from .extra_keys import explain_extra_keys
from .keys import KeyMapping, strip_wrappers
from .layout import check_mapping, plan_mapping
from .recorded import check_recorded_config, one_sided_window
from .target import (
    check_tensors,
    expected_shapes,
    load_config,
    overridden_labels,
    resolve_labels,
    resolve_problem_type,
    tie_weights,
)


@dataclass(frozen=True)
class MapOptions:
    """What the user said about the mapping (see the command line for each option's meaning)."""

    task: str = "auto"
    prefix: str = "auto"
    labels: tuple[str, ...] | None = None
    problem_type: str | None = None
    global_attention: str = "default"
    copy: str | None = None
    drop: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    adapter_config: Path | None = None
    #: Where ``labels`` came from, for messages and the report (``verify``: the folder's config.json).
    labels_from: str = "--labels"


@dataclass(frozen=True)
class GlobalAttention:
    """The global attention the module trained with, and how a downstream caller reproduces it.

    Attributes:
        convention: the mask (``registry.attention.global_attention_mask``) the check applies.
        class_default: the convention the task's class applies when the caller passes none.
        declared: ``--global-attention`` as given (``default`` when not).
        call: the line that reproduces ``convention`` when it is not the class's default, else ``None``.
    """

    convention: str
    class_default: str
    declared: str
    call: str | None


@dataclass(frozen=True)
class Facts:
    """What the conversion decided, as the report's ``conversion`` section records it (in this order).

    Attributes:
        task, family, architecture, auto_class, pipeline_tag: the task's entry (``registry.tasks``).
        head: what the head's keys looked like.
        num_labels, id2label, labels_from: the labels, and where their names came from (tasks with labels).
        problem_type, problem_type_from: ``config.problem_type`` and where it came from.
        global_attention: see ``GlobalAttention``.
        tied: the class's tied weights are saved once; untied: target to source of copies that differ.
        pooler: the encoder's pooler is converted.
        selection: ``--copy``, ``--drop`` and ``--keep`` as given.
        custom_head: what ``custom_head.safetensors`` holds (key, shape, dtype, why), or ``None``.
        one_sided_window: a single recorded ``attention_window`` read as the one-sided half of the
            config's (``recorded.one_sided_window``), or ``None``.
        labels_overridden: the different labels the hyper-parameters record, which ``--labels`` replaced
            (``target.overridden_labels``: ``recorded`` and ``recorded_from``), or ``None``.
    """

    task: str
    family: str
    architecture: str
    auto_class: str
    pipeline_tag: str
    head: str
    num_labels: int | None
    id2label: dict[str, str] | None
    labels_from: str
    problem_type: str | None
    global_attention: GlobalAttention
    tied: bool
    pooler: bool
    untied: dict[str, str]
    problem_type_from: str | None
    selection: dict[str, Any]
    custom_head: dict[str, Any] | None
    one_sided_window: dict[str, Any] | None = None
    labels_overridden: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the report."""
        return asdict(self)


@dataclass(frozen=True)
class AdapterState:
    """What the check needs to rebuild peft's unmerged adapter model: its LoRA config and weights.

    Attributes:
        adapter_config: the ``--adapter-config`` path.
        state: peft's state dict of the adapter model (keys under ``base_model.model.``), as the
            checkpoint holds it.
    """

    adapter_config: Path
    state: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Plan:
    """The map stage's result: how every key converts, the task's config, and what was decided.

    Attributes:
        task: the task's registry entry.
        mapping: every checkpoint key's fate (mapped to a class key, or dropped with the reason).
        config: the task's transformers config (``LongformerConfig`` or ``LEDConfig``).
        facts: what the report and the model card say about the decisions.
        adapters: the unmerged LoRA adapters, when the checkpoint held some: the check's reference
            is then peft's unmerged model (``checking.reference.AdapterReference``); else ``None``.
    """

    task: Task
    mapping: KeyMapping
    config: Any
    facts: Facts
    adapters: AdapterState | None = None


def make_plan(ckpt: Checkpoint, base: BaseModel, options: MapOptions) -> Plan:
    """Read the task and map the keys, then build the task's config and check the keys against it.

    ``ckpt.state_dict`` is brought to what the folder holds: merged adapters replace the adapter
    keys, and tied copies are resolved (see ``target.tie_weights``).

    Raises:
        MappingError: keys or shapes that do not fit (with the options that would make them fit),
            options that do not apply, a base config that disagrees with the recorded one
            (``ConfigDisagreement``).
        BaseModelError: the base config cannot be built for the task.
    """
    check_tensors(ckpt)
    shapes = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
    found = adapters.find_adapters(shapes)
    if found is not None and options.adapter_config is None:
        raise adapters.unmerged_error(found)
    if found is None and options.adapter_config is not None:
        raise MappingError(
            "--adapter-config was given, but the checkpoint holds no LoRA adapters (no lora_A or lora_B keys)",
            "leave --adapter-config out",
        )
    if found is not None:
        shapes = adapters.merged_shapes(shapes, found)
    picked = selection.select(shapes, copy=options.copy, drop=options.drop, keep=options.keep)
    try:
        mapping = plan_mapping(picked.shapes, task=options.task, prefix=options.prefix)
    except MappingError as exc:
        raise explain_extra_keys(picked.shapes, exc, task=options.task, prefix=options.prefix) from None
    mapping.dropped.update(picked.dropped)
    mapping.dropped.update(picked.kept)
    mapping.custom_head += [k for k in picked.kept if k not in mapping.custom_head]
    task = tasks.get(mapping.task, mapping.family)
    if options.problem_type and not task.problem_type:
        raise MappingError(
            f"--problem-type applies to text-classification, but the task is {task.name}", "leave --problem-type out"
        )
    names, labels_from = resolve_labels(
        task, mapping.num_labels, options.labels, ckpt.hparams, given_from=options.labels_from
    )
    problem_type, problem_type_from = resolve_problem_type(task, options.problem_type, ckpt.hparams)
    config = load_config(base, task, num_labels=mapping.num_labels, labels=names, problem_type=problem_type)
    check_recorded_config(ckpt.hparams, config, base_spec=base.spec)
    adapter_state = None
    if found is not None:
        assert options.adapter_config is not None
        merged = adapters.merge(ckpt, found, options.adapter_config, config, task, mapping)
        ckpt.state_dict = {k: v for k, v in ckpt.state_dict.items() if k not in set(found.keys)} | merged.tensors
        mapping.dropped.update(merged.dropped)
        adapter_state = AdapterState(adapter_config=options.adapter_config, state=merged.peft_state)
    tie_weights(ckpt, mapping, task, config)
    check_mapping(mapping, shapes, expected_shapes(task, config, pooler=mapping.has_pooler), task)
    custom_head = _custom_head(ckpt, mapping, picked.kept)
    facts = _facts(task, mapping, config, options, labels_from, problem_type_from, custom_head)
    facts = replace(
        facts,
        one_sided_window=one_sided_window(ckpt.hparams, config),
        labels_overridden=overridden_labels(task, options.labels, ckpt.hparams),
    )
    return Plan(task=task, mapping=mapping, config=config, facts=facts, adapters=adapter_state)


def _facts(
    task: Task,
    mapping: KeyMapping,
    config: Any,
    options: MapOptions,
    labels_from: str,
    problem_type_from: str | None,
    custom_head: dict[str, Any] | None,
) -> Facts:
    convention = resolve_global_attention(task, options.global_attention)
    return Facts(
        task=task.name,
        family=task.family,
        architecture=task.architecture,
        auto_class=task.auto_class,
        pipeline_tag=task.pipeline_tag,
        head=mapping.head,
        num_labels=mapping.num_labels if task.labels else None,
        id2label={str(k): v for k, v in config.id2label.items()} if task.labels else None,
        labels_from=labels_from,
        problem_type=getattr(config, "problem_type", None),
        global_attention=GlobalAttention(
            convention=convention,
            class_default=task.global_attention,
            declared=options.global_attention,
            call=None if convention == task.global_attention else GLOBAL_ATTENTION_CALLS[convention],
        ),
        tied=not mapping.untied and bool(task.tied),
        pooler=mapping.has_pooler,
        untied=dict(mapping.untied),
        problem_type_from=problem_type_from,
        selection={"copy": options.copy, "drop": list(options.drop), "keep": list(options.keep)},
        custom_head=custom_head,
    )


def _custom_head(ckpt: Checkpoint, mapping: KeyMapping, kept: dict[str, str]) -> dict[str, Any] | None:
    """What ``custom_head.safetensors`` holds, for the report and the card: each tensor's shape, dtype and why."""
    if not mapping.custom_head:
        return None
    tensors = {key: ckpt.state_dict[key] for key in sorted(mapping.custom_head)}
    _, stripped = strip_wrappers(list(tensors))
    crfs = selection.find_crfs({stripped[k]: tuple(t.shape) for k, t in tensors.items()})
    return {
        "file": CUSTOM_HEAD_NAME,
        "tensors": [
            {
                "key": key,
                "shape": list(t.shape),
                "dtype": str(t.dtype).removeprefix("torch."),
                "kept_by": "--keep" if key in kept else f"--task {mapping.task}",
            }
            for key, t in tensors.items()
        ],
        "crfs": [{"prefix": prefix, "tags": tags} for prefix, tags in crfs.items()],
    }
