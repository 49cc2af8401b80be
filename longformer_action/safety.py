"""``check-checkpoint-safety``: refuse committed checkpoints whose pickle would import more than tensors.

A checkpoint is a pickle, and a pickle is a program: unpickling can import and call anything it names.
This pre-commit hook reads each file's pickle opcodes without running them and lists the globals it
would import beyond torch's weights-only allow-list (tensors, storages, plain containers). A file that
names any is refused. Lightning checkpoints whose hyper-parameters hold a ``Path`` or a ``Namespace``
are refused too: harmless classes, but loading them needs a full unpickle; save plain values instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from .text import first_line

#: What the hook looks at (``.pre-commit-hooks.yaml`` has the same pattern).
SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def check_file(path: Path) -> str | None:
    """Why ``path`` is refused, or ``None`` when its pickle imports only tensors and plain containers.

    Args:
        path: a checkpoint written by ``torch.save`` or Lightning (zip or legacy format).

    Returns:
        One line naming the file and what its pickle would import, or why it could not be read.
    """
    from .errors import ConversionError
    from .reading.unpickling import unsafe_globals

    try:
        found = unsafe_globals(path)
    except ConversionError as exc:
        return f"{path}: cannot be checked: {exc.format_message()}"
    except Exception as exc:  # a file that is not a readable pickle at all
        first = first_line(exc)
        return f"{path}: cannot be checked ({type(exc).__name__}: {first})"
    if not found:
        return None
    return (
        f"{path}: unpickling would import {', '.join(found)}; save only tensors and plain values "
        f"(e.g. torch.save(model.state_dict(), ...), or hyper-parameters as str/int/float/dict)"
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def main(files: Sequence[Path]) -> None:
    """Refuse checkpoints (FILES) whose pickle would import anything beyond tensors and plain containers.

    Nothing in the files is imported or run. Exit status 1 with one line per refused file on stderr.
    """
    problems = [line for line in (check_file(path) for path in files) if line]
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
