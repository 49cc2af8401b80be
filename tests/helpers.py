"""Assertions shared by the tests."""

from __future__ import annotations


def one_error_line(result) -> str:
    """Assert the command failed with exactly one ``Error:`` line and no traceback; return it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def parse_github_output(text: str) -> dict[str, str]:
    """A ``GITHUB_OUTPUT`` file read as the runner reads it: ``name<<DELIM`` ... ``DELIM`` and ``name=value``."""
    values: dict[str, str] = {}
    if not text:
        return values
    lines = text.split("\n")
    assert lines[-1] == "", "the file should end with a newline"
    lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            assert name and delimiter, f"malformed heredoc header {line!r}"
            assert delimiter in lines[i + 1 :], f"heredoc {name!r} is not terminated by {delimiter!r}"
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
    return values
