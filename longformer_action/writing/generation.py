"""The folder's generation settings (LED): the base model's effective ones (``checking/settings.py`` proves them).

transformers reads a model's generation settings from its ``generation_config.json``, or, when it has
none, from the generation keys of its ``config.json`` (``num_beams``, ``max_length``,
``no_repeat_ngram_size``, ``length_penalty`` ... as allenai's LED fine-tunes for arXiv and PubMed keep
them). transformers 5 no longer writes those keys into ``config.json``, so the folder gets them in a
``generation_config.json`` of its own. It is written without ``_from_model_config``: with that flag,
older ``generate()`` rebuilds the settings from ``config.json`` and drops them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry.files import GENERATION_CONFIG_NAME

#: Fields that say where a generation config came from, not how it generates.
_METADATA = ("transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash")


def base_generation_config(folder: Path | None, config: dict[str, Any]) -> Any:
    """The base model's effective generation settings, as ``from_pretrained`` reads them.

    Args:
        folder: the base model's folder; its ``generation_config.json`` is read when there is one.
        config: the base's ``config.json`` (parsed); its generation keys are read when there is no
            ``generation_config.json`` (transformers' own fallback, ``_from_model_config=True``).

    Returns:
        A ``transformers.GenerationConfig``.
    """
    from transformers import GenerationConfig

    if folder is not None and (folder / GENERATION_CONFIG_NAME).is_file():
        return GenerationConfig.from_pretrained(folder)
    return GenerationConfig.from_dict(dict(config), _from_model_config=True)


def settings(generation: Any) -> dict[str, Any]:
    """The fields of a ``GenerationConfig`` that decide how it generates (no metadata), as plain data."""
    data = generation.to_dict()
    return {k: v for k, v in sorted(data.items()) if k not in _METADATA}


def non_default(generation: Any) -> dict[str, Any]:
    """The fields that differ from ``GenerationConfig()``'s (for the report and the model card)."""
    return {k: v for k, v in sorted(generation.to_diff_dict().items()) if k not in _METADATA}


def write_generation_config(generation: Any, folder: Path) -> str:
    """Save ``generation`` into ``folder`` as ``save_pretrained`` does, without ``_from_model_config``.

    Returns:
        The file name.
    """
    # the base's settings as they are: written even where transformers would warn about them
    generation._from_model_config = False
    text = generation.to_json_string(use_diff=True, keys_to_pop=["compile_config", "_from_model_config"])
    (folder / GENERATION_CONFIG_NAME).write_text(text, encoding="utf-8")
    return GENERATION_CONFIG_NAME


def compare_settings(mine: Any, theirs: Any) -> list[str]:
    """One line per generation field where the folder's loaded settings differ from the base's.

    Args:
        mine: the ``GenerationConfig`` the folder's model loaded (``model.generation_config``).
        theirs: the base model's effective one (``base_generation_config``).
    """
    got, want = settings(mine), settings(theirs)
    lines = []
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            lines.append(
                f"{GENERATION_CONFIG_NAME}: {key} is {got.get(key)!r} where the base's generation settings have "
                f"{want.get(key)!r}"
            )
    if getattr(mine, "_from_model_config", False):
        lines.append(
            f"{GENERATION_CONFIG_NAME}: _from_model_config is true, so transformers 4.x rebuilds the settings from "
            "config.json"
        )
    return lines
