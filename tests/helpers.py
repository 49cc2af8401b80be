"""Assertions shared by the tests."""

from __future__ import annotations


def one_error_line(result) -> str:
    """Assert the command failed with exactly one ``Error:`` line and no traceback; return it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
