"""One walk over a checkpoint's hyper-parameters, whatever wraps them.

Lightning stores what ``save_hyperparameters()`` saw: a dict, an ``argparse.Namespace``, Lightning's
``AttributeDict``, OmegaConf containers, config objects, and with ``LightningCLI`` the
``{"class_path": ..., "init_args": {...}}`` form of every argument typed as a class (plus
``_instantiator`` and ``_class_path`` at the top). Under the restricted unpickler objects are inert
placeholders that record their state. The readers of the hyper-parameters (the recorded config, the
labels, ``problem_type``) all see the same levels, in the same order, through ``levels``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .checkpoint import Inert, as_mapping

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
