"""Check the folder's tokenizer: encode the sample texts with it (from ``tokenizer.json`` and from the
legacy files alone) and with the base's, and compare every id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..reading.base_model import HPARAMS_BASE, tokenizer_files
from ..text import described
from ..writing.tokenizer import UNSET_MAX_LENGTH, legacy_copy, legacy_names, load_base_tokenizer, usable_positions
from .inputs import SAMPLE_CONTEXT, SAMPLE_QUESTION, SAMPLE_TEXT, SAMPLE_UNICODE
from .result import NamedCheck


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, or ``None`` when it has no tokenizer files (or they do not load: the
    tokenizer stage says why)."""

    if not tokenizer_files(folder):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception:  # the tokenizer stage reports it, naming the files
        return None


def tokenizer_check(folder: Path, base: Any, config: Any) -> NamedCheck:
    """The folder's tokenizer, from ``tokenizer.json`` and from its legacy files alone, against the base's.

    Both encode the check's sample texts (special tokens, ``<mask>``, a text pair, non-ASCII text, a
    padded batch, a text longer than the positions, truncated); every id, mask and decoded text must be
    the same. ``model_max_length`` must be the base's capped to the positions the model can use.
    Without a base (``verify`` without ``--base-model``) only the cap is checked.

    Raises:
        BaseModelError: the base's tokenizer files do not load.
    """
    from transformers import AutoTokenizer

    files = [p.name for p in tokenizer_files(folder)]
    base_files = list(base.tokenizer_files) if base is not None else []
    if not files:
        if base_files:
            names = ", ".join(p.name for p in base_files)
            return NamedCheck("tokenizer", [], False, "", [f"the folder has no tokenizer, the base has one ({names})"])
        why = (
            "the folder has none"
            if base is None
            else "--base-model hparams gives the config alone"
            if base.spec == HPARAMS_BASE
            else "the base model has no tokenizer files"
        )
        return NamedCheck("tokenizer", [], None, f"no tokenizer: {why}")
    try:
        mine = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # a folder whose tokenizer does not load fails the check
        return NamedCheck("tokenizer", files, False, "", [f"{', '.join(files)}: do not load ({described(exc)})"])
    positions = usable_positions(config)
    source = "tokenizer.json" if "tokenizer.json" in files else ", ".join(files)
    if not base_files:
        failures = check_max_length(mine, mine.model_max_length, positions)
        return NamedCheck(
            "tokenizer", files, not failures, "loads; not compared with a base model's (no --base-model)", failures
        )
    theirs = load_base_tokenizer(base.folder, base_files, config)
    count, failures = compare_encodings(mine, theirs, positions, source=source)
    failures += check_max_length(mine, theirs.model_max_length, positions)
    legacy = legacy_names(folder)
    with legacy_copy(folder) as copy:
        if copy is not None:
            try:
                old = AutoTokenizer.from_pretrained(copy)
            except Exception as exc:  # legacy files that do not load fail the check
                failures.append(f"{', '.join(legacy)}: do not load without tokenizer.json ({described(exc)})")
            else:
                failures += compare_encodings(old, theirs, positions, source=", ".join(legacy))[1]
    detail = (
        f"{count} encodings equal to the base's ({type(theirs).__name__}) from {source}"
        + (f" and from {', '.join(legacy)} alone" if legacy else "")
        + f"; model_max_length {mine.model_max_length} ({positions} positions)"
    )
    return NamedCheck("tokenizer", files, not failures, detail, failures)


def _sample_calls(tokenizer: Any, positions: int) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """(name, args, keyword arguments) of the tokenizer calls the check compares."""
    specials = [t for t in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.eos_token) if t]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("text", (SAMPLE_TEXT,), {}),
        ("text pair", (SAMPLE_QUESTION, SAMPLE_CONTEXT), {}),
        ("non-ASCII text", (SAMPLE_UNICODE,), {}),
        ("padded batch", ([SAMPLE_QUESTION, SAMPLE_TEXT],), {"padding": True}),
    ]
    if specials:
        written = f"{specials[0]} {SAMPLE_QUESTION} {specials[-1]}{specials[-1]} {SAMPLE_CONTEXT} {specials[-1]}"
        calls.append(("text with special tokens", (written,), {"add_special_tokens": False}))
    if tokenizer.mask_token:
        masked = f"The Eiffel Tower stands in {tokenizer.mask_token}, on the Champ de Mars."
        calls.append(("text with a mask", (masked,), {}))
    one = max(len(tokenizer(SAMPLE_CONTEXT, add_special_tokens=False)["input_ids"]), 1)
    long_text = " ".join([SAMPLE_CONTEXT] * (positions // one + 2))
    calls.append(("text longer than the positions", (long_text,), {"truncation": True, "max_length": positions}))
    return calls


def _first_difference(mine: Any, theirs: Any) -> str:
    if isinstance(mine, list) and isinstance(theirs, list) and mine and isinstance(mine[0], list):
        for row, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                return f"row {row}: {_first_difference(a, b)}"
        return f"{len(mine)} rows where the base gives {len(theirs)}"
    if isinstance(mine, list) and isinstance(theirs, list):
        for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                return f"position {i} is {a!r} where the base gives {b!r}"
        return f"{len(mine)} tokens where the base gives {len(theirs)}"
    return f"{mine!r} where the base gives {theirs!r}"


def compare_encodings(mine: Any, theirs: Any, positions: int, *, source: str) -> tuple[int, list[str]]:
    """Encode the check's sample texts with both tokenizers and compare every field and the decoded text.

    Args:
        mine: the folder's tokenizer.
        theirs: the base model's tokenizer.
        positions: the model's usable positions (the long sample is truncated to them).
        source: the folder's file(s) ``mine`` was read from, for messages.

    Returns:
        The number of encodings compared, and one line per difference naming the file, the sample and
        the field (``input_ids``, ``attention_mask``, ``token_type_ids``, the decoded text).
    """
    failures: list[str] = []
    calls = _sample_calls(theirs, positions)
    for name, args, kwargs in calls:
        got, want = mine(*args, **kwargs), theirs(*args, **kwargs)
        for key in sorted(set(got) | set(want)):
            if got.get(key) != want.get(key):
                difference = _first_difference(got.get(key), want.get(key))
                failures.append(f"{source}: {key} of the {name} differ ({difference})")
        ids = want["input_ids"]
        row = ids[0] if ids and isinstance(ids[0], list) else ids
        for skip in (False, True):
            decoded, expected = mine.decode(row, skip_special_tokens=skip), theirs.decode(row, skip_special_tokens=skip)
            if decoded != expected:
                failures.append(
                    f"{source}: decoding the {name} gives {decoded[:60]!r} where the base gives {expected[:60]!r}"
                )
    for key, value in theirs.special_tokens_map.items():
        if mine.special_tokens_map.get(key) != value:
            failures.append(f"{source}: {key} is {mine.special_tokens_map.get(key)!r} where the base has {value!r}")
    return len(calls), failures


def check_max_length(mine: Any, base_max_length: int, positions: int) -> list[str]:
    """The folder's ``model_max_length`` is the base's capped to the positions, and truncation keeps to it."""
    want = min(int(min(base_max_length, UNSET_MAX_LENGTH)), positions)
    failures = []
    if mine.model_max_length != want:
        failures.append(
            f"tokenizer_config.json: model_max_length is {mine.model_max_length} where the model's positions allow "
            f"{positions} (the base's is {base_max_length if base_max_length < UNSET_MAX_LENGTH else 'unset'})"
        )
    long_text = " ".join([SAMPLE_CONTEXT] * (positions // 8 + 2))
    length = len(mine(long_text, truncation=True)["input_ids"])
    if length > positions:
        failures.append(
            f"tokenizer_config.json: truncation=True keeps {length} tokens of a long text, more than the {positions} "
            "positions the model can use"
        )
    return failures
