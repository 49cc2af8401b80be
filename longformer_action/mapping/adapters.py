"""LoRA adapters in a checkpoint: recognise them, merge them as peft does, check against peft's unmerged model.

A LightningModule that trains ``peft.get_peft_model(LongformerFor...(config), LoraConfig(...))``
saves peft's keys: ``<attr>.base_model.model.<the class's keys>``, where each adapted Linear is
``...query.base_layer.{weight,bias}`` plus ``...query.lora_A.<adapter>.weight`` and
``...query.lora_B.<adapter>.weight``, and each module peft trains a copy of (``modules_to_save``) is
``...classifier.original_module.*`` plus ``...classifier.modules_to_save.<adapter>.*``.

The state dict does not hold the adapter's scaling (``lora_alpha / r``): the merge needs peft's
``adapter_config.json``. Given it, the class is rebuilt around the checkpoint's weights with peft,
merged with peft's own ``merge_and_unload()``, and the check's reference is the unmerged adapter
model as peft computes it (not the merged weights, which would check the merge against itself).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MappingError
from ..reading.checkpoint import Checkpoint
from ..registry import tasks
from ..registry.tasks import Task
from ..text import first_line, listing
from .keys import KeyMapping

Shape = tuple[int, ...]


#: The prefix peft's model puts in front of the wrapped class's keys.
PEFT_PREFIX = "base_model.model."


ADAPTER_CONFIG_NAME = "adapter_config.json"


#: An adapter's own key: peft's ``.lora_A.<adapter>.weight``, or loralib's bare ``.lora_A`` parameter.
_LORA = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(\.|$)")


_BASE_LAYER = ".base_layer."


_SAVED_COPY = re.compile(r"\.modules_to_save\.[^.]+\.")


_ORIGINAL = ".original_module."


@dataclass(frozen=True)
class Adapters:
    """The LoRA adapters found in a state dict.

    Attributes:
        root: the prefix up to and including ``base_model.model.`` (e.g. ``model.base_model.model.``).
        keys: every key under ``root`` (the peft model's whole state dict).
        modules: the adapted modules' paths (relative to ``root``).
        adapters: the adapter names (``default``).
    """

    root: str
    keys: tuple[str, ...]
    modules: tuple[str, ...]
    adapters: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The adapted modules for messages, e.g. ``query, value in 2 layers``."""
        names = sorted({m.rsplit(".", 1)[-1] for m in self.modules})
        return f"{len(self.modules)} adapted modules ({', '.join(names)}) under '{self.root or '<root>'}'"


def merged_name(key: str) -> str | None:
    """The key a peft key becomes once merged, or ``None`` when merging removes it.

    ``...query.base_layer.weight`` becomes ``...query.weight``; ``lora_A``/``lora_B`` and the
    frozen ``original_module`` of a ``modules_to_save`` module are removed; the trained copy
    ``...classifier.modules_to_save.default.dense.weight`` becomes ``...classifier.dense.weight``.
    """
    if _LORA.search(key) or _ORIGINAL in key:
        return None
    return _SAVED_COPY.sub(".", key.replace(_BASE_LAYER, "."))


def find_adapters(names: Iterable[str]) -> Adapters | None:
    """The LoRA adapters in a state dict, or ``None`` when it has none.

    Args:
        names: the state dict's keys.
    """
    names = list(names)
    marked = [k for k in names if _LORA.search(k)]
    if not marked:
        return None
    first = marked[0]
    at = first.find(PEFT_PREFIX)
    root = first[: at + len(PEFT_PREFIX)] if at >= 0 else ""
    modules = sorted({_LORA.split(k)[0][len(root) :] for k in marked})
    adapters = sorted({k[m.end() :].split(".")[0] for k in marked for m in [_LORA.search(k)] if m and m.group(2)})
    return Adapters(
        root=root,
        keys=tuple(k for k in names if k.startswith(root)),
        modules=tuple(modules),
        adapters=tuple(adapters),
    )


def unmerged_error(found: Adapters) -> MappingError:
    """The error for adapters given without their configuration (or in a layout peft did not write)."""
    example = next(k for k in found.keys if _LORA.search(k))
    if not found.root.endswith(PEFT_PREFIX):
        return MappingError(
            f"the checkpoint holds LoRA adapters that are not merged into its weights: {found.summary} (keys such "
            f"as '{example}'), not in peft's layout (no '{PEFT_PREFIX}')",
            "merge them in the module that trained them (W + scaling * B @ A; loralib merges on eval()) and "
            "convert the merged state dict",
        )
    return MappingError(
        f"the checkpoint holds LoRA adapters that are not merged into its weights: {found.summary} "
        f"(keys such as '{example}')",
        f"pass --adapter-config with the {ADAPTER_CONFIG_NAME} peft saved with these adapters (their scaling, "
        "lora_alpha / r, is not in the state dict) to merge them as peft does; or merge them yourself with peft's "
        "merge_and_unload() and convert the merged model's state dict",
    )


def merged_shapes(shapes: Mapping[str, Shape], found: Adapters) -> dict[str, Shape]:
    """The state dict's shapes as they will be once the adapters are merged (pure: no tensor is touched)."""
    result: dict[str, Shape] = {}
    for key, shape in shapes.items():
        if key.startswith(found.root) and _is_peft_key(key):
            name = merged_name(key)
            if name is not None:
                result[name] = tuple(shape)
        else:
            result[key] = tuple(shape)
    return result


def _is_peft_key(key: str) -> bool:
    return bool(_LORA.search(key)) or _BASE_LAYER in key or _ORIGINAL in key or bool(_SAVED_COPY.search(key))


def read_adapter_config(path: Path) -> Any:
    """peft's ``LoraConfig`` from an ``adapter_config.json`` (or the folder that holds one).

    Raises:
        MappingError: the file is missing, not JSON, or not a LoRA adapter's configuration.
    """
    from peft import LoraConfig

    path = Path(path)
    file = path / ADAPTER_CONFIG_NAME if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MappingError(
            f"cannot read --adapter-config {file} ({type(exc).__name__})",
            f"pass the {ADAPTER_CONFIG_NAME} that peft's save_pretrained wrote beside the adapter",
        ) from None
    if not isinstance(data, dict) or str(data.get("peft_type", "LORA")).upper() != "LORA":
        kind = data.get("peft_type") if isinstance(data, dict) else type(data).__name__
        raise MappingError(
            f"--adapter-config {file} is not a LoRA adapter's configuration (peft_type {kind})",
            "only LoRA adapters are merged; merge others with peft and convert the merged state dict",
        )
    known = {f.name for f in dataclasses.fields(LoraConfig)}
    try:
        return LoraConfig(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise MappingError(
            f"--adapter-config {file} is not a valid LoRA configuration ({first_line(exc)})",
            f"pass the {ADAPTER_CONFIG_NAME} that peft's save_pretrained wrote beside the adapter",
        ) from None


@dataclass
class Merged:
    """The outcome of a merge.

    Attributes:
        tensors: merged key (as in the checkpoint, under ``Adapters.root``) to tensor.
        dropped: adapter key to why it is not in the folder.
        peft_state: the unmerged peft model's state dict (keys under ``base_model.model.``): the
            check rebuilds peft's model from it as its reference.
    """

    tensors: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)
    peft_state: dict[str, Any] = field(default_factory=dict, repr=False)


def merge(
    ckpt: Checkpoint, found: Adapters, adapter_config: Path, config: Any, task: Task, mapping: KeyMapping
) -> Merged:
    """Merge the adapters as peft does, and keep the unmerged peft model's weights for the check's reference.

    The task's class is built from ``config``, wrapped with ``peft.get_peft_model`` and the
    adapter's ``LoraConfig``, and given the checkpoint's weights (strictly: every key of peft's
    model, nothing else); a copy is merged with ``merge_and_unload()``. Merged tensors keep the
    dtype of the weight they replace.

    Args:
        ckpt: the checkpoint; its ``state_dict`` is not changed here.
        found: the adapters (``find_adapters``).
        adapter_config: the ``--adapter-config`` path.
        config: the task's ``LongformerConfig``.
        task: the task the merged keys were read as.
        mapping: the key mapping of the merged keys.

    Returns:
        The ``Merged`` tensors, the adapter keys' reasons, and peft's unmerged state dict.

    Raises:
        MappingError: peft does not wrap the task's class here, or the configuration does not
            describe the checkpoint's adapters.
    """
    from peft import get_peft_model

    wrapper = mapping.wrapper_prefix
    wraps_class = mapping.head_prefix != "" and found.root == wrapper + mapping.head_prefix
    wraps_encoder = tasks.base_model_prefix(task) == "" and found.root == wrapper + mapping.encoder_prefix
    if not (found.root.endswith(PEFT_PREFIX) and (wraps_class or wraps_encoder)):
        raise MappingError(
            f"LoRA adapters are merged when peft wraps the task's transformers class ({task.architecture}); "
            f"here they sit under '{found.root or '<root>'}' and the encoder under "
            f"'{wrapper + mapping.encoder_prefix or '<root>'}'",
            "merge them in your module with peft's merge_and_unload() and convert the merged state dict",
        )
    lora = read_adapter_config(adapter_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes on its own defaults, not the user's business here
        model = get_peft_model(task.model_class()(config), lora)
    state = {PEFT_PREFIX + k[len(found.root) :]: ckpt.state_dict[k] for k in found.keys}
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        what = "; ".join(
            part
            for part in (
                f"peft's model needs {_few(missing)} that the checkpoint lacks" if missing else "",
                f"the checkpoint has {_few(extra)} that peft's model does not" if extra else "",
            )
            if part
        )
        raise MappingError(
            f"--adapter-config does not describe the checkpoint's adapters ({found.summary}): {what}",
            f"pass the {ADAPTER_CONFIG_NAME} saved with these adapters (target_modules, modules_to_save, r)",
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MappingError(
            f"--adapter-config does not fit the checkpoint's adapters: {str(exc).strip().splitlines()[-1][:200]}",
            f"pass the {ADAPTER_CONFIG_NAME} saved with these adapters (r, target_modules)",
        ) from None
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged_model = copy.deepcopy(model).merge_and_unload()
    tensors = {}
    for key, tensor in merged_model.state_dict().items():
        source = found.root + key
        like = next((ckpt.state_dict[k] for k in found.keys if merged_name(k) == source), tensor)
        tensors[source] = tensor.detach().to(like.dtype).clone()
    dropped = {}
    for key in found.keys:
        name = merged_name(key)
        if name is None and _ORIGINAL in key:
            dropped[key] = "peft's frozen original of a module it trained a copy of (modules_to_save); the copy is kept"
        elif name is None:
            dropped[key] = f"LoRA adapter, merged into '{_LORA.split(key)[0]}.weight' by peft's merge_and_unload"
        elif name != key:
            dropped[key] = f"merged by peft's merge_and_unload into '{name}'"
    return Merged(tensors=tensors, dropped=dropped, peft_state=state)


def _few(keys: list[str]) -> str:
    return listing([f"'{k}'" for k in keys], 4)


def unmerged_model(task: Task, config: Any, adapter_config: Path, state: Mapping[str, Any]) -> Any:
    """peft's unmerged adapter model of ``task``'s class with ``config``, holding ``state``, in eval mode.

    Raises:
        MappingError: ``adapter_config`` cannot be read (see ``read_adapter_config``).
    """
    from peft import get_peft_model

    lora = read_adapter_config(adapter_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes on its own defaults, not the user's business here
        model = get_peft_model(task.model_class()(config), lora)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()
