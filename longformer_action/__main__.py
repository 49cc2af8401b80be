"""``python -m longformer_action``: the ``longformer-convert`` command."""

from .cli import main

main(prog_name="longformer-convert")
