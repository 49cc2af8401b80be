"""The one helper each for the phrases messages repeat: an exception's first line, and "a, b and N more"."""

from __future__ import annotations

from collections.abc import Iterable


def first_line(exc: BaseException, limit: int = 160, *, fallback: str | None = None) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters.

    Args:
        exc: any exception.
        limit: the longest line returned, in characters (a message can be a whole traceback's worth).
        fallback: what an exception without a message gives; default: its type's name.
    """
    text = str(exc).strip()
    if not text:
        return (type(exc).__name__ if fallback is None else fallback)[:limit]
    return text.splitlines()[0][:limit]


def described(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line`` of ``exc`` (its type's name alone when it has no message)."""
    text = first_line(exc, limit, fallback="")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def listing(items: Iterable[str], limit: int, *, sep: str = ", ", more: str = " and {} more") -> str:
    """The first ``limit`` of ``items`` joined by ``sep``, and how many more there are.

    ``listing(["'a'", "'b'", "'c'"], 2)`` is ``'a', 'b' and 1 more``; messages that join with ``"; "``
    pass ``more="; and {} more"``.
    """
    items = list(items)
    shown = sep.join(items[:limit])
    return shown + (more.format(len(items) - limit) if len(items) > limit else "")


def quoted(keys: Iterable[str], limit: int = 6) -> str:
    """Keys sorted and quoted, the first ``limit`` of them: ``'a', 'b' and 3 more``."""
    return listing([f"'{k}'" for k in sorted(keys)], limit)
