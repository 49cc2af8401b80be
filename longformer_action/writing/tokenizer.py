"""Write the folder's tokenizer: the base model's, as transformers loads it, saved by transformers.

A base model's tokenizer comes in many files (``tokenizer.json``; ``vocab.json`` + ``merges.txt``;
WordPiece's ``vocab.txt``; sentencepiece's ``sentencepiece.bpe.model`` or ``spiece.model``), and which
of them a class reads is transformers' business, not a list of names to copy. So the tokenizer is
loaded with ``AutoTokenizer`` from the base, its ``model_max_length`` capped to the positions the model
can use, and written with ``save_pretrained`` (``tokenizer.json``) plus the legacy vocabulary files
transformers 4.x and tokenizers < 0.20 read (written by the ``tokenizers`` model itself for BPE and
WordPiece; the sentencepiece model file as the base has it), with the added tokens' properties in
``tokenizer_config.json`` for loaders that read those files alone. The check
(``checking/tokenizer.py``) proves it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BaseModelError
from ..filesystem import raise_read_problem, read_error
from ..reading.base_model import tokenizer_files
from ..registry.families import config_value, family_of_config
from ..text import first_line

#: Tokenizer files that hold no vocabulary.
_NOT_VOCABULARY = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
}


#: transformers' ``model_max_length`` when a tokenizer sets none (``VERY_LARGE_INTEGER``).
UNSET_MAX_LENGTH = int(1e30)


def usable_positions(config: Any) -> int:
    """The longest input, in tokens, the model's position table can take.

    Longformer (RoBERTa's positions): ``max_position_embeddings - pad_token_id - 1``, since position
    ids start after the padding index; LED: ``max_encoder_position_embeddings``.
    """
    family = family_of_config(config)
    positions = int(family.value(config, "max_positions"))
    if family.offset_positions:
        return positions - int(family.value(config, "pad_token_id") or 0) - 1
    return positions


def _names(files: list[Path]) -> str:
    return ", ".join(p.name for p in files)


def load_base_tokenizer(folder: Path, files: list[Path], config: Any) -> Any:
    """The base model's tokenizer, as ``AutoTokenizer`` loads it from ``folder``.

    Args:
        folder: the base model's folder (a local folder or a Hub snapshot).
        files: its tokenizer files (``tokenizer_files``), for messages.
        config: the model config (its ``vocab_size`` bounds the token ids).

    Raises:
        BaseModelError: the files do not load (naming them and the cause), load as a tokenizer that
            has only its special tokens (a ``tokenizer_class`` that does not read these files), or
            give ids past the config's ``vocab_size``.
    """
    from transformers import AutoTokenizer

    from ..quiet import quiet_transformers

    quiet_transformers()
    for path in files:  # a file that cannot be read is named with its real cause, not as a bad tokenizer
        raise_read_problem(path, "tokenizer file", "--base-model", BaseModelError)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except OSError as exc:
        if exc.filename is None:
            raise
        raise BaseModelError(*read_error(Path(os.fsdecode(exc.filename)), exc, "tokenizer file")) from None
    except Exception as exc:  # transformers raises many kinds here; each means these files do not load
        first = first_line(exc, 200)
        raise BaseModelError(
            f"the base model's tokenizer files ({_names(files)}) do not load with AutoTokenizer: "
            f"{type(exc).__name__}: {first}",
            "fix or replace them (tokenizer_config.json's tokenizer_class names the class that reads them), "
            "or pass a --base-model whose tokenizer loads",
        ) from None
    specials = set(tokenizer.all_special_ids)
    if len(tokenizer) <= len(specials):
        raise BaseModelError(
            f"the base model's tokenizer files ({_names(files)}) load as {type(tokenizer).__name__} with "
            f"{len(tokenizer)} tokens, only its special tokens: that class did not read their vocabulary",
            "set tokenizer_class in tokenizer_config.json to the class the vocabulary belongs to "
            "(XLMRobertaTokenizer for sentencepiece.bpe.model, BertTokenizer for vocab.txt)",
        )
    vocab_size = config_value(config, "vocab_size")
    if vocab_size is not None and len(tokenizer) > int(vocab_size):
        raise BaseModelError(
            f"the base model's tokenizer ({_names(files)}) has {len(tokenizer)} tokens but config.json's "
            f"vocab_size is {vocab_size}: ids from {vocab_size} on index past the embeddings",
            "pass a --base-model whose tokenizer and config belong together",
        )
    return tokenizer


def _model_type(tokenizer: Any) -> str | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return json.loads(backend.to_str()).get("model", {}).get("type")


def _write_legacy_vocabulary(tokenizer: Any, folder: Path) -> list[str]:
    # transformers 5 saves tokenizer.json only; transformers 4.x's slow classes and tokenizers < 0.20
    # (which cannot read BPE merges stored as pairs) read these files instead
    kind = _model_type(tokenizer)
    if kind in ("BPE", "WordPiece"):
        return [Path(p).name for p in tokenizer.backend_tokenizer.model.save(str(folder))]
    source = getattr(tokenizer, "init_kwargs", {}).get("vocab_file")
    if isinstance(source, str) and source.endswith(".model") and Path(source).is_file():
        shutil.copyfile(source, folder / Path(source).name)
        return [Path(source).name]
    return []


def _decoder_cleans_up(tokenizer: Any) -> bool:
    # WordPiece's decoder in tokenizer.json removes the spaces before punctuation itself ("cleanup": true),
    # whatever clean_up_tokenization_spaces says; transformers 4.x's slow classes have no such decoder
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    parts = decoder.get("decoders", [decoder]) if isinstance(decoder, dict) else []
    return any(isinstance(part, dict) and part.get("cleanup") is True for part in parts)


def _adapt_tokenizer_config(tokenizer: Any, folder: Path, *, added_tokens: bool) -> None:
    # what transformers 5 writes into tokenizer_config.json that older transformers read otherwise
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if added_tokens and "added_tokens_decoder" not in config:
        # 5.x leaves it out for tokenizers-backed classes (tokenizer.json has them); a loader reading the
        # legacy files alone needs it, or <mask> loses its lstrip and " <mask>" encodes differently
        config["added_tokens_decoder"] = {
            str(i): token.__getstate__() for i, token in sorted(tokenizer.added_tokens_decoder.items())
        }
    extra = config.get("extra_special_tokens")
    if isinstance(extra, list):
        # 5.x's list of extra special tokens is 4.x's additional_special_tokens; 4.50-4.57 read a list here
        # as a dict of named tokens and fail (5.x reads additional_special_tokens into the same list)
        config.setdefault("additional_special_tokens", extra)
        del config["extra_special_tokens"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass
class TokenizerFacts:
    """What was written for the tokenizer.

    Attributes:
        tokenizer_class: the class ``AutoTokenizer`` loaded.
        files: the files written into the folder.
        base_max_length: the base tokenizer's ``model_max_length`` (``UNSET_MAX_LENGTH`` when it sets none).
        saved_max_length: the folder's ``model_max_length``.
        positions: the longest input the model can take (``usable_positions``).
        clean_up_tokenization_spaces: written explicitly (4.44 and older default to ``True``, 5.x to
            ``False``); ``True`` where the tokenizer's decoder cleans up spaces itself (WordPiece).
        legacy_files: the legacy vocabulary files among ``files`` (``vocab.json`` and ``merges.txt``,
            ``vocab.txt``, or the sentencepiece model).
    """

    tokenizer_class: str
    files: list[str]
    base_max_length: int
    saved_max_length: int
    positions: int
    clean_up_tokenization_spaces: bool
    legacy_files: list[str] = field(default_factory=list)

    @property
    def capped(self) -> bool:
        """Whether ``model_max_length`` was lowered to the positions."""
        return self.saved_max_length != self.base_max_length

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the report."""
        return {
            "class": self.tokenizer_class,
            "files": self.files,
            "legacy_files": self.legacy_files,
            "model_max_length": {
                "base": None if self.base_max_length >= UNSET_MAX_LENGTH else self.base_max_length,
                "saved": self.saved_max_length,
                "positions": self.positions,
                "capped": self.capped,
            },
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
        }


#: How the tokenizers library (Rust) words an operating-system error: ``Exception("... (os error 28)")``.
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@contextmanager
def _rust_os_errors(path: Path) -> Iterator[None]:
    # tokenizers writes tokenizer.json from Rust and raises a plain Exception for what Python would
    # raise as OSError (a full disk, a read-only mount): give it back its errno, so that it is reported
    # as the write failure it is
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        found = _RUST_OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), os.fspath(path)) from exc


def write_tokenizer(tokenizer: Any, folder: Path, config: Any) -> TokenizerFacts:
    """Save ``tokenizer`` into ``folder`` with transformers, ``model_max_length`` capped to the positions.

    Writes what ``save_pretrained`` writes (``tokenizer_config.json``, ``tokenizer.json``, ...) with
    ``clean_up_tokenization_spaces`` stated (older transformers default to another value), then the
    legacy vocabulary files (``vocab.json`` and ``merges.txt`` for BPE, ``vocab.txt`` for WordPiece,
    the sentencepiece model file for sentencepiece tokenizers), and makes ``tokenizer_config.json``
    readable by transformers 4.46-4.57: the added tokens' properties, and 5.x's list of extra special
    tokens as ``additional_special_tokens``.

    Args:
        tokenizer: the base's tokenizer (``load_base_tokenizer``); its ``model_max_length`` is changed.
        folder: the output folder.
        config: the model config (``usable_positions``).
    """
    before = {p.name for p in folder.iterdir()}
    positions = usable_positions(config)
    base_max = int(min(tokenizer.model_max_length, UNSET_MAX_LENGTH))
    tokenizer.model_max_length = min(base_max, positions)
    # stated, not left to the reader's default (4.44 and older default to True, 5.x to False); where the
    # decoder cleans up anyway, True, so that 4.x's slow classes decode the same text
    cleanup = bool(tokenizer.clean_up_tokenization_spaces) or _decoder_cleans_up(tokenizer)
    tokenizer.clean_up_tokenization_spaces = cleanup
    tokenizer.init_kwargs["clean_up_tokenization_spaces"] = cleanup
    with _rust_os_errors(folder / "tokenizer.json"):
        tokenizer.save_pretrained(folder)
    legacy = _write_legacy_vocabulary(tokenizer, folder)
    _adapt_tokenizer_config(tokenizer, folder, added_tokens=bool(legacy))
    written = sorted({p.name for p in folder.iterdir()} - before)
    return TokenizerFacts(
        tokenizer_class=type(tokenizer).__name__,
        files=written,
        base_max_length=base_max,
        saved_max_length=int(tokenizer.model_max_length),
        positions=positions,
        clean_up_tokenization_spaces=cleanup,
        legacy_files=legacy,
    )


@contextmanager
def legacy_copy(folder: Path) -> Iterator[Path | None]:
    """A temporary copy of ``folder``'s tokenizer without ``tokenizer.json``: what tokenizers < 0.20 and
    transformers 4.x's slow classes read. ``None`` when the folder has no legacy vocabulary file."""
    if not legacy_names(folder):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="legacy-tokenizer-") as tmp:
        for path in [*tokenizer_files(folder), folder / "config.json"]:
            if path.name != "tokenizer.json" and path.is_file():
                shutil.copyfile(path, Path(tmp) / path.name)
        yield Path(tmp)


def legacy_names(folder: Path) -> list[str]:
    """The folder's legacy vocabulary files (``vocab.json``, ``merges.txt``, ``vocab.txt``, ``*.model``)."""
    return [p.name for p in tokenizer_files(folder) if p.name not in _NOT_VOCABULARY]
