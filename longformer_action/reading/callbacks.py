"""Lightning's ``ModelCheckpoint`` state in a checkpoint: the monitored metric, its best score, this file's score.

Where Lightning keeps it:

* 1.5 and later: ``checkpoint["callbacks"]`` keyed by the callback's ``state_key``, the class name and its
  arguments (``"ModelCheckpoint{'monitor': 'val_f1', 'mode': 'max', 'every_n_train_steps': 0, ...}"``; a subclass
  keeps its own name), with ``ModelCheckpoint.state_dict()``: ``monitor``, ``best_model_score`` (a 0-d tensor),
  ``best_model_path``, ``current_score``, ``best_k_models`` (path to score), ``kth_best_model_path`` ...
* 1.0 to 1.4: keyed by the class itself (under the restricted unpickler, an inert placeholder class named
  ``...ModelCheckpoint``), without ``mode``;
* 0.8 to 0.9: ``checkpoint_callback_best_model_score`` and ``checkpoint_callback_best_model_path`` at the top
  level; 0.6 to 0.7: ``checkpoint_callback_best``. Neither names the monitored metric.

Which score belongs to the weights in the file: a top-k save records its own path and score in ``best_k_models``
before it writes the file, so the file's name finds its score there. A copy under another name (``last.ckpt``,
``best.ckpt``) is found by its ``global_step`` when the top-k file's name carries Lightning's default
``step=N``: the weights change only with optimizer steps. ``current_score`` is not used: Lightning updates it only
when a score enters the top k, so in ``last.ckpt`` it may belong to earlier weights.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

_STATE_KEY = re.compile(r"(?P<name>[A-Za-z_][\w.]*)(?P<arguments>\{.*\})?", re.DOTALL)
_STEP = re.compile(r"(?:^|[^A-Za-z0-9])step=(\d+)(?![0-9])")


@dataclass(frozen=True)
class ModelCheckpointState:
    """One ``ModelCheckpoint``'s state, as the checkpoint records it.

    Attributes:
        callback: the callback's class name (``ModelCheckpoint``, or a subclass's), or the top-level key of a
            Lightning 0.x checkpoint (``checkpoint_callback_best_model_score``, ``checkpoint_callback_best``).
        monitor: the monitored metric's name as the module logged it (``val_f1``); ``None`` when the callback
            monitored nothing, or a Lightning 0.x checkpoint that does not say.
        mode: ``min`` or ``max`` when the state key records it (Lightning 1.5 and later), else ``None``.
        best_score: the best monitored value over the run (``best_model_score``), a float; ``None`` when not
            recorded, not finite (Lightning 1.x starts at +-inf), or an object that was not rebuilt.
        best_model_path: the file name (no folder: that was the training machine's) of the best checkpoint.
        file_score: the monitored value of the weights in this file, when the file is found among the top-k
            saves (see the module docstring), else ``None``.
    """

    callback: str
    monitor: str | None
    mode: str | None
    best_score: float | None
    best_model_path: str | None = None
    file_score: float | None = None
    top_k: tuple[tuple[str, float], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The state as the report and ``inspect --json`` show it (``top_k`` left out)."""
        return {
            "callback": self.callback,
            "monitor": self.monitor,
            "mode": self.mode,
            "best_score": self.best_score,
            "best_model_path": self.best_model_path,
            "file_score": self.file_score,
        }


def model_checkpoint_states(
    checkpoint: Mapping[str, Any], *, file_name: str | None = None
) -> list[ModelCheckpointState]:
    """Every ``ModelCheckpoint`` state a checkpoint records, in the order of the Trainer's callbacks.

    Pure: reads the unpickled checkpoint dict (tensors or plain numbers; inert placeholders where the restricted
    unpickler built no object), runs nothing, reads no file.

    Args:
        checkpoint: the unpickled checkpoint (the top-level dict).
        file_name: the checkpoint file's name, to find the score of its own weights among the top-k saves.

    Returns:
        One state per ``ModelCheckpoint`` (a callback whose state holds ``best_model_score``); empty when none.
    """
    step = checkpoint.get("global_step")
    step = step if isinstance(step, int) and not isinstance(step, bool) else None
    found = []
    callbacks = checkpoint.get("callbacks")
    for key, value in callbacks.items() if isinstance(callbacks, Mapping) else ():
        state = _as_mapping(value)
        if state is None or "best_model_score" not in state:
            continue
        name, arguments = _parse_key(key)
        monitor = state.get("monitor", arguments.get("monitor"))
        mode = arguments.get("mode")
        found.append(
            _state(
                name,
                monitor if isinstance(monitor, str) else None,
                mode if mode in ("min", "max") else None,
                state,
                file_name,
                step,
            )
        )
    for old in ("checkpoint_callback_best_model_score", "checkpoint_callback_best"):
        if old in checkpoint and not found:
            state = {
                "best_model_score": checkpoint[old],
                "best_model_path": checkpoint.get("checkpoint_callback_best_model_path"),
            }
            found.append(_state(old, None, None, state, file_name, step))
    return found


def _state(
    callback: str,
    monitor: str | None,
    mode: str | None,
    state: Mapping[str, Any],
    file_name: str | None,
    step: int | None,
) -> ModelCheckpointState:
    best_path = state.get("best_model_path")
    best_name = _file_name(best_path)
    best = _as_float(state.get("best_model_score"))
    top_k = {}
    for path, score in (_as_mapping(state.get("best_k_models")) or {}).items():
        value = _as_float(score)
        if _file_name(path) and value is not None:
            top_k[_file_name(path)] = value
    if best_name and best is not None:
        top_k.setdefault(best_name, best)
    return ModelCheckpointState(
        callback=callback,
        monitor=monitor,
        mode=mode,
        best_score=best,
        best_model_path=best_name,
        file_score=_file_score(top_k, file_name, step),
        top_k=tuple(sorted(top_k.items())),
    )


def _file_score(top_k: Mapping[str, float], file_name: str | None, step: int | None) -> float | None:
    if file_name and file_name in top_k:
        return top_k[file_name]
    if step is None:
        return None
    # a copy under another name: the top-k file saved at the same optimizer step holds the same weights
    same = {score for name, score in top_k.items() if (m := _STEP.search(name)) and int(m[1]) == step}
    return same.pop() if len(same) == 1 else None


def _parse_key(key: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(key, type):  # Lightning 1.0-1.4: the class (or the restricted unpickler's stand-in for it)
        qualname = getattr(key, "_qualname", None) or key.__qualname__
        return str(qualname).rsplit(".", 1)[-1], {}
    text = str(key)
    match = _STATE_KEY.fullmatch(text.strip())
    if match is None:
        return text, {}
    arguments: dict[str, Any] = {}
    if match["arguments"]:
        try:
            parsed = ast.literal_eval(match["arguments"])
            arguments = parsed if isinstance(parsed, dict) else {}
        except (ValueError, SyntaxError):  # a timedelta's repr, for instance: read the two strings needed
            for name in ("monitor", "mode"):
                found = re.search(rf"'{name}': '((?:[^'\\]|\\.)*)'", match["arguments"])
                if found:
                    arguments[name] = found[1]
    return match["name"].rsplit(".", 1)[-1], arguments


def _as_mapping(value: Any) -> Mapping[Any, Any] | None:
    if isinstance(value, Mapping):
        return value
    items = getattr(value, "inert_items", None)  # the restricted unpickler's stand-in for a dict subclass
    return items() if callable(items) else None


def _file_name(path: Any) -> str | None:
    if not isinstance(path, str) or not path.strip():
        return None
    return PurePath(path.replace("\\", "/")).name or None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif hasattr(value, "numel") and hasattr(value, "item"):  # a tensor
        if value.numel() != 1 or value.is_complex():
            return None
        number = float(value.item())
    else:
        return None
    return number if math.isfinite(number) else None
