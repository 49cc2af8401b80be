"""The target model's config: the task's config from the base's, its labels, ``problem_type``, tied
weights and expected shapes.

The target model is only ever built on the ``meta`` device (to learn the expected keys and shapes):
no random weights are allocated, and no base weights are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BaseModelError, MappingError
from ..reading.base_model import BaseModel
from ..reading.checkpoint import Checkpoint, is_tensor
from ..reading.hparams import labels_from_hparams
from ..registry.families import FAMILIES, family_of_model_type
from ..registry.tasks import Task
from ..text import first_line
from .keys import KeyMapping


def load_config(
    base: BaseModel,
    task: Task,
    *,
    num_labels: int | None = None,
    labels: Sequence[str] | None = None,
    problem_type: str | None = None,
) -> Any:
    """The base model's config (``LongformerConfig`` or ``LEDConfig``, by the task's family), set up for ``task``.

    Args:
        base: the resolved base model.
        task: the registry's task; its class becomes ``architectures``.
        num_labels: the head's number of outputs (``config.num_labels``), when the class reads it.
        labels: label names in output order (``id2label`` and ``label2id``).
        problem_type: ``config.problem_type`` (text classification).

    Raises:
        BaseModelError: the base config is of the other family (an LED checkpoint with a Longformer
            config, or the reverse).
    """
    family = FAMILIES[task.family]
    given = base.config.get("model_type")
    if given != family.model_type:
        other = family_of_model_type(given)
        raise BaseModelError(
            f"the checkpoint is {family.with_article()} model ({task.architecture}) but --base-model {base.spec} is "
            f"{other.with_article() if other else repr(given)} config (model_type '{given}')",
            f"pass --base-model with the {family.short} config it was trained from, such as "
            f"{' or '.join(hub_id for _, hub_id in family.default_bases)}",
        )
    config = family.config_cls().from_dict(dict(base.config))
    config.architectures = [task.architecture]
    if num_labels is not None:
        config.num_labels = num_labels
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    if problem_type:
        config.problem_type = problem_type
    return config


def expected_shapes(task: Task, config: Any, *, pooler: bool = True) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the task's class built from ``config`` on the meta device (no memory).

    ``pooler`` matters only for a class that keeps the pooler when present (``LongformerModel``).

    Raises:
        BaseModelError: the class refuses the config (an odd ``attention_window``, or a list of
            windows whose length is not the number of encoder layers).
    """
    import torch

    cls = task.model_class()
    try:
        with torch.device("meta"):
            model = cls(config, add_pooling_layer=pooler) if task.pooler is None else cls(config)
    except (ValueError, AssertionError) as exc:
        first = first_line(exc)
        family = FAMILIES[task.family]
        raise BaseModelError(
            f"the base config does not build {task.architecture} (attention_window "
            f"{family.value(config, 'attention_window')}, {family.value(config, 'layers')} encoder layers): {first}",
            "pass --base-model with the config the model was trained from (an even attention_window, one per layer)",
        ) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_tensors(ckpt: Checkpoint) -> None:
    """Refuse a state dict whose values are not all tensors.

    Raises:
        MappingError: naming the entries and what they hold.
    """
    not_tensors = [k for k, v in ckpt.state_dict.items() if not is_tensor(v)]
    if not_tensors:
        kinds = sorted({repr(ckpt.state_dict[k]) for k in not_tensors})[:3]
        raise MappingError(
            f"state dict entries {not_tensors[:4]} are not tensors ({', '.join(kinds)})",
            "re-save the state dict with plain tensors, or pass --trust-checkpoint if you trust the file",
        )


def tie_weights(ckpt: Checkpoint, mapping: KeyMapping, task: Task, config: Any) -> None:
    """Save tied keys (``Task.tied``) once when the checkpoint's copies are equal; else follow ``Task.tie_policy``.

    transformers ties ``lm_head.decoder`` to the word embeddings when ``tie_word_embeddings`` is set;
    a checkpoint whose decoder differs from its embeddings computed something else. Under ``untie``
    (masked LM) its folder is saved with ``tie_word_embeddings: false`` and every tensor, never
    silently tied. Under ``refuse`` (LED, whose embeddings are one tensor in every class) it is an error.

    Raises:
        MappingError: copies differ and the task's policy is ``refuse`` (names the keys and the difference).
    """
    import torch

    sources = {t: s for s, t in mapping.mapped.items()}
    pairs = [(target, tied_to) for target, tied_to in task.tied.items() if target in sources and tied_to in sources]
    differ = []  # the same facts, named by the checkpoint's keys
    for target, tied_to in pairs:
        mine, theirs = ckpt.state_dict[sources[target]], ckpt.state_dict[sources[tied_to]]
        if mine.shape != theirs.shape:
            mapping.untied[target] = f"shape {list(mine.shape)} differs from '{tied_to}' {list(theirs.shape)}"
            differ.append(f"'{sources[target]}' {list(mine.shape)} vs '{sources[tied_to]}' {list(theirs.shape)}")
        elif not torch.equal(mine, theirs):
            diff = (mine.double() - theirs.double()).abs().max().item()
            mapping.untied[target] = f"differs from '{tied_to}' (max abs diff {diff:.3g})"
            differ.append(f"'{sources[target]}' differs from '{sources[tied_to]}' (max abs diff {diff:.3g})")
    if differ and task.tie_policy == "refuse":
        raise MappingError(
            f"the checkpoint's copies of tied weights differ: {'; '.join(differ)}; {task.architecture} ties them "
            "(one tensor), so the folder would not compute what the checkpoint computed",
            "convert the checkpoint of a module whose embeddings and LM head are one tensor (as transformers ties "
            "them), or re-tie them before saving",
        )
    if mapping.untied:
        config.tie_word_embeddings = False
        return
    for target, tied_to in pairs:
        if target in task.legacy_keys:
            continue  # equal, and written anyway: older transformers read the tied value through it
        mapping.dropped[sources[target]] = f"tied to '{tied_to}' (equal values); transformers ties them on loading"
        del mapping.mapped[sources[target]]


def resolve_labels(
    task: Task,
    num_labels: int | None,
    given: Sequence[str] | None,
    hparams: Mapping[str, Any],
    *,
    given_from: str = "--labels",
) -> tuple[list[str] | None, str]:
    """The label names (``None``: transformers' ``LABEL_0`` ...) and where they came from.

    ``given_from`` names where ``given`` came from, for messages and the report (``--labels``;
    ``verify``: the folder's ``config.json``).

    Raises:
        MappingError: ``--labels`` for a task without labels, or a count that disagrees with the head.
    """
    if not task.labels:
        if given:
            raise MappingError(f"--labels was given, but {task.name} has no labels", "leave --labels out")
        return None, "none"
    found = (list(given), given_from) if given else labels_from_hparams(hparams)
    if found is None:
        return None, "none (transformers' LABEL_0, LABEL_1, ...)"
    names, source = found
    if len(names) != num_labels:
        fix = "pass --labels with one name per output" if source == given_from else "pass --labels to override it"
        raise MappingError(f"{source} names {len(names)} labels but the head has {num_labels} outputs", fix)
    if len(set(names)) != len(names):
        raise MappingError(f"{source} names a label twice ({', '.join(names)})", "pass --labels with distinct names")
    return names, source


def overridden_labels(task: Task, given: Sequence[str] | None, hparams: Mapping[str, Any]) -> dict[str, Any] | None:
    """The labels the hyper-parameters record when ``given`` (``--labels``) replaces different ones, else ``None``.

    Renaming is legitimate, so this is no error; but a wrong order or wrong names give a model that runs and is
    mislabelled, so the report records it (``{"recorded": [...], "recorded_from": "hyper-parameter '...'"}``) and
    the log warns.
    """
    if not task.labels or not given:
        return None
    found = labels_from_hparams(hparams)
    if found is None or list(found[0]) == list(given):
        return None
    return {"recorded": list(found[0]), "recorded_from": found[1]}


def resolve_problem_type(task: Task, given: str | None, hparams: Mapping[str, Any]) -> tuple[str | None, str]:
    """``config.problem_type`` and where it came from: ``--problem-type``, else the hyper-parameters.

    A multi-label classifier whose hyper-parameters say ``multi_label_classification`` is served
    with a sigmoid by transformers' pipelines only when its config says so.

    Raises:
        MappingError: ``--problem-type`` disagrees with the ``problem_type`` the hyper-parameters
            record (naming both).
    """
    from ..reading.hparams import recorded_problem_type

    if not task.problem_type:
        return None, "none"
    recorded = recorded_problem_type(hparams)
    if given and recorded and recorded[0] != given:
        raise MappingError(
            f"--problem-type {given} disagrees with {recorded[1]}, which records problem_type '{recorded[0]}'",
            f"pass --problem-type {recorded[0]} (what the module trained with), or leave --problem-type out",
        )
    if given:
        return given, "--problem-type"
    if recorded:
        return recorded
    return None, "none"
