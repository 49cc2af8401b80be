"""One walk over a checkpoint's hyper-parameters, whatever wraps them, and what is found there.

Lightning stores what ``save_hyperparameters()`` saw: a dict, an ``argparse.Namespace``, Lightning's
``AttributeDict``, OmegaConf containers, config objects, and with ``LightningCLI`` the
``{"class_path": ..., "init_args": {...}}`` form of every argument typed as a class (plus
``_instantiator`` and ``_class_path`` at the top). Under the restricted unpickler objects are inert
placeholders that record their state. The readers of the hyper-parameters (the recorded config, the
labels, ``problem_type``) all see the same levels, in the same order, through ``levels``.


Found here: a whole model config the hyper-parameters record, ``problem_type``, and the labels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..registry.families import FAMILIES, Family, family_of_config_class
from ..registry.names import PROBLEM_TYPES
from . import hparams as hparams_walk
from .pretrained import CONFIG_FILE
from .unpickling import Inert

#: How deep the walk goes below the hyper-parameters themselves.
MAX_DEPTH = 6


#: How many levels the walk visits at most (a pickled object graph can be large).
MAX_LEVELS = 500


@dataclass(frozen=True)
class Level:
    """One mapping-like level of the hyper-parameters.

    Attributes:
        path: where it sits, as keys joined by dots (``""`` for the hyper-parameters themselves;
            ``config.init_args`` for a LightningCLI argument).
        values: its keys and values.
        qualname: the class it stands for, when known: an object's class, an inert placeholder's,
            or a LightningCLI ``class_path`` (``""`` for plain dicts).
    """

    path: str
    values: Mapping[Any, Any]
    qualname: str = ""

    def where(self) -> str:
        """How messages name it."""
        return "the hyper-parameters" if not self.path else f"hyper-parameter '{self.path}'"


def _qualname(value: Any) -> str:
    if isinstance(value, Inert):
        return value._qualname
    if isinstance(value, (dict, list, tuple)):
        return ""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _unwrap(path: str, value: Any) -> Level | None:
    if isinstance(value, (str, bytes, int, float, bool)) or value is None or isinstance(value, type):
        return None
    mapping = as_mapping(value)
    if mapping is None:
        return None
    class_path = mapping.get("class_path") if isinstance(mapping, Mapping) else None
    init_args = as_mapping(mapping.get("init_args")) if isinstance(class_path, str) else None
    if isinstance(class_path, str) and init_args is not None:
        # LightningCLI (jsonargparse): an argument typed as a class is stored as its class path and arguments
        return Level(f"{path}.init_args" if path else "init_args", init_args, class_path)
    return Level(path, mapping, _qualname(value))


def as_mapping(value: Any) -> Mapping[Any, Any] | None:
    """A mapping view of a hyper-parameter value: a dict, an inert placeholder's items, an object's ``vars``."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, Inert):
        return value.inert_items()
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return vars(value)
    return None


def levels(hparams: Mapping[str, Any], *, max_depth: int = MAX_DEPTH) -> Iterator[Level]:
    """Every mapping-like level of the hyper-parameters, breadth first (shallow levels first).

    Descends into dicts, objects' ``__dict__``, inert placeholders, LightningCLI's
    ``class_path``/``init_args`` pairs and lists of those; visits each object once.

    Args:
        hparams: ``Checkpoint.hparams``.
        max_depth: how many levels below the hyper-parameters to look.
    """
    queue: list[tuple[Level, int]] = [(Level("", hparams), 0)]
    seen = {id(hparams)}
    visited = 0
    while queue and visited < MAX_LEVELS:
        level, depth = queue.pop(0)
        visited += 1
        yield level
        if depth >= max_depth:
            continue
        for key, value in list(level.values.items()):
            children = value if isinstance(value, (list, tuple)) else [value]
            for index, child in enumerate(children):
                if id(child) in seen:
                    continue
                name = f"{level.path}.{key}" if level.path else str(key)
                if isinstance(value, (list, tuple)):
                    name = f"{name}[{index}]"
                found = _unwrap(name, child)
                if found is not None:
                    seen.add(id(child))
                    queue.append((found, depth + 1))


def first(hparams: Mapping[str, Any], name: str) -> tuple[Any, Level] | None:
    """The value of the first hyper-parameter called ``name`` (shallowest first), and its level."""
    for level in levels(hparams):
        if name in level.values:
            return level.values[name], level
    return None


def _is_config(value: Mapping[Any, Any], qualname: str) -> bool:
    families = FAMILIES.values()
    if qualname.endswith(("RobertaConfig", *(f.config_class for f in families))):
        return True
    if value.get("model_type") in ("roberta", *(f.model_type for f in families)):
        return True
    return any(_marks(f) <= set(value) for f in families)


def _marks(family: Family) -> set[str]:
    # the fields that together say "a whole config of this family" when model_type is absent
    return {family.fields[role] for role in ("attention_window", "hidden_size", "layers")}


def _whole_config(hparams: Mapping[str, Any]) -> hparams_walk.Level | None:
    for level in hparams_walk.levels(hparams):
        if _is_config(level.values, level.qualname):
            return level
    return None


def recorded_config(hparams: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A whole model config the hyper-parameters hold, and where; ``None`` when they hold none.

    Looks at every level of the hyper-parameters, shallowest first, whatever wraps it (see
    ``hparams.levels``: dicts, Namespaces, config objects or their inert placeholders, and
    LightningCLI's ``class_path``/``init_args``), for a dict or object with ``model_type``
    ``longformer`` or ``led``, or with the fields that make one (``attention_window``,
    ``hidden_size`` and ``num_hidden_layers``; LED's ``attention_window``, ``d_model`` and
    ``encoder_layers``), or a ``LongformerConfig`` or ``LEDConfig`` object. (A training config such
    as Hydra's ``DictConfig`` is not a model config, whatever its class is called.)

    Returns:
        The config's plain values (no objects), and a name for it in messages.
    """
    level = _whole_config(hparams)
    if level is None:
        return None
    plain = {str(k): v for k, v in level.values.items() if not isinstance(v, Inert) and _jsonable(v)}
    if "model_type" not in plain:
        family = family_of_config_class(level.qualname)
        if family is not None:
            plain["model_type"] = family.model_type
    return plain, _where(level)


def _where(level: hparams_walk.Level) -> str:
    # a transformers folder's config.json is read as a hyper-parameter of that name
    return f"the checkpoint's {CONFIG_FILE}" if level.path == CONFIG_FILE else level.where()


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, (str, int)) and _jsonable(v) for k, v in value.items())
    return False


def recorded_problem_type(hparams: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ``problem_type`` the hyper-parameters record (shallowest first, at any level), and where."""
    for level in hparams_walk.levels(hparams):
        value = level.values.get("problem_type")
        if isinstance(value, str) and value in PROBLEM_TYPES:
            path = f"{level.path}.problem_type" if level.path else "problem_type"
            return value, f"hyper-parameter '{path}'"
    return None


#: Hyper-parameter names that hold label names, as public LightningModules call them.
LABEL_HPARAMS = ("id2label", "label2id", "labels", "label_list", "label_names", "classes")


def labels_from_hparams(hparams: Mapping[str, Any]) -> tuple[list[str], str] | None:
    """Label names from the hyper-parameters, and where they were found; ``None`` when absent.

    Looks at every level, shallowest first, whatever wraps it (``hparams.levels``: an ``args``
    Namespace, a config dict or object, a LightningCLI argument's ``init_args``, or the inert
    placeholder that stands in for either), for ``id2label`` (index to name), ``label2id`` (name to
    index) or a list of names (``labels``, ``label_list``, ``label_names``, ``classes``).
    """
    from . import hparams as hparams_walk

    for level in hparams_walk.levels(hparams):
        for name in LABEL_HPARAMS:
            value = level.values.get(name)
            found = _label_list(name, as_mapping(value) if not isinstance(value, (list, tuple)) else value)
            if found:
                where = f"{level.path}.{name}" if level.path else name
                return found, f"hyper-parameter '{where}'"
    return None


def _label_list(name: str, value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    if isinstance(value, Mapping) and value:
        try:
            pairs = (
                sorted((int(k), str(v)) for k, v in value.items())
                if name == "id2label"
                else sorted((int(v), str(k)) for k, v in value.items())
            )
        except (TypeError, ValueError):
            return None
        if [i for i, _ in pairs] == list(range(len(pairs))):
            return [n for _, n in pairs]
    return None
