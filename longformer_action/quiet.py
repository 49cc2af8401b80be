"""Silence transformers' own logging while the tool loads things it reports on itself."""

from __future__ import annotations


def quiet_transformers() -> None:
    """Keep transformers' progress bars and padding notices out of the log (stages log their own lines)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
