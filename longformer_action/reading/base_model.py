"""Resolve ``--base-model``: a local folder, a Hub id, or ``hparams`` (the config the checkpoint records).

Config and tokenizer files only, never weights."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BaseModelError
from ..filesystem import read_error
from ..registry.families import FAMILIES
from ..text import first_line
from .checkpoint import Checkpoint
from .hparams import _marks, recorded_config

#: Other files of the base model that the conversion reads when it has them (the LED's generation settings).
EXTRA_FILES = ("generation_config.json",)


#: The base config's ``model_type``s this tool converts (one per model family).
MODEL_TYPES = tuple(family.model_type for family in FAMILIES.values())


@dataclass
class BaseModel:
    """A resolved base model.

    Attributes:
        spec: what the user passed (folder or Hub id).
        folder: a local folder that holds ``config.json`` (a Hub snapshot for Hub ids).
        config: the parsed ``config.json``.
        tokenizer_files: tokenizer files present in ``folder`` (``TOKENIZER_PATTERNS``); the
            tokenizer itself is what ``AutoTokenizer`` loads from them.
        extra_files: other files the conversion reads (``generation_config.json``) present in ``folder``.
        revision: the Hub revision asked for (``None`` for folders).
        commit: the Hub commit the snapshot came from, when known.
    """

    spec: str
    folder: Path
    config: dict[str, Any]
    tokenizer_files: list[Path] = field(default_factory=list)
    extra_files: list[Path] = field(default_factory=list)
    revision: str | None = None
    commit: str | None = None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def resolve_base_model(spec: str, *, revision: str | None = None, token: str | None = None) -> BaseModel:
    """Find the base model's ``config.json`` and tokenizer files.

    Args:
        spec: a local folder, or a Hub model id such as ``allenai/longformer-base-4096``.
        revision: a branch, tag or commit on the Hub (ignored for folders).
        token: a Hub token for private models (default: ``HF_TOKEN`` from the environment).

    Returns:
        The ``BaseModel``.

    Raises:
        BaseModelError: the folder has no ``config.json``, the id is unknown or unreachable, or the
            config is neither a Longformer nor an LED config.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        folder, commit = path, None
    elif path.exists() or not _HUB_ID.match(spec):
        raise BaseModelError(
            f"base model folder {spec} does not exist or is not a folder",
            "pass a folder holding config.json, or a Hub id such as allenai/longformer-base-4096",
        )
    else:
        folder, commit = _download(spec, revision=revision, token=token or os.environ.get("HF_TOKEN") or None)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BaseModelError(
            f"base model {spec} has no config.json",
            "pass a folder made by save_pretrained (it needs config.json; weights are not read)",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaseModelError(*read_error(config_path, exc, "base model config")) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaseModelError(
            f"base model's config.json is not valid JSON ({exc})", "fix or replace config.json"
        ) from None
    if config.get("model_type") not in MODEL_TYPES:
        raise BaseModelError(
            f"base model {spec} is a '{config.get('model_type')}' model, not 'longformer' or 'led'",
            "pass the Longformer (or LED) config the checkpoint was trained from",
        )
    found = tokenizer_files(folder)
    extra_files = [folder / name for name in EXTRA_FILES if (folder / name).is_file()]
    return BaseModel(
        spec=spec,
        folder=folder,
        config=config,
        tokenizer_files=found,
        extra_files=extra_files,
        revision=revision if folder is not path else None,
        commit=commit,
    )


def _download(repo_id: str, *, revision: str | None, token: str | None) -> tuple[Path, str | None]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = Path(
            snapshot_download(
                repo_id=repo_id,
                revision=revision,
                token=token,
                allow_patterns=["config.json", *TOKENIZER_PATTERNS, *EXTRA_FILES],
            )
        )
    except RevisionNotFoundError:
        raise BaseModelError(
            f"revision '{revision}' of {repo_id} does not exist on the Hub", "pass an existing --revision"
        ) from None
    except GatedRepoError:
        raise BaseModelError(
            f"{repo_id} is gated on the Hub", "accept its terms on the Hub and pass a token in HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise BaseModelError(
            f"base model {repo_id} is neither a local folder nor a model on the Hub (or it is private)",
            "check the id, pass a token in HF_TOKEN for a private model, or pass a local folder",
        ) from None
    except HFValidationError:
        raise BaseModelError(
            f"base model {repo_id} is neither a local folder nor a valid Hub id",
            "pass a folder holding config.json, or a Hub id such as allenai/longformer-base-4096",
        ) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        if isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", None) == 401:
            raise BaseModelError(
                f"the Hub answered 401 Unauthorized for {repo_id}",
                "check the token in HF_TOKEN (renew it if it expired, or unset it for a public model)",
            ) from None
        first = first_line(exc)
        raise BaseModelError(
            f"cannot fetch {repo_id} from the Hub ({first})",
            "check the network, or pass --base-model a local folder with config.json and tokenizer files",
        ) from None
    commit = folder.name if len(folder.name) == 40 else None
    return folder, commit


#: File names (glob patterns) that belong to a tokenizer: what a Hub base model downloads besides
#: config.json, and what ``BaseModel.tokenizer_files`` lists.
TOKENIZER_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.model",
    "*.tiktoken",
    "chat_template.jinja",
)


def tokenizer_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that belong to a tokenizer (``TOKENIZER_PATTERNS``), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in TOKENIZER_PATTERNS)
    )


#: The ``--base-model`` value that takes the config from the checkpoint's hyper-parameters.
HPARAMS_BASE = "hparams"


def base_from_hparams(ckpt: Checkpoint) -> Any:
    """A base model whose config is the one the checkpoint's hyper-parameters hold (no tokenizer files).

    Returns:
        A ``base_model.BaseModel`` with spec ``hparams``.

    Raises:
        BaseModelError: the hyper-parameters hold no whole config.
    """
    from .base_model import BaseModel

    found = recorded_config(ckpt.hparams)
    if found is None:
        names = ", ".join(ckpt.hyper_parameters) or "none"
        raise BaseModelError(
            f"--base-model {HPARAMS_BASE} needs a model config in the checkpoint's hyper-parameters, "
            f"and they hold none (hyper-parameters: {names})",
            "pass --base-model with a folder or Hub id holding the config the model was trained with",
        )
    config, _ = found
    config = {k: v for k, v in config.items() if not k.startswith("_") or k == "_name_or_path"}
    # a recorded config without model_type: the family whose fields it has (LED's d_model, encoder_layers)
    family = next((f for f in FAMILIES.values() if _marks(f) <= set(config)), FAMILIES["longformer"])
    config.setdefault("model_type", family.model_type)
    return BaseModel(spec=HPARAMS_BASE, folder=Path(ckpt.path).parent, config=config)
