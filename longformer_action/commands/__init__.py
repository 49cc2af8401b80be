"""The commands' work: ``convert``, ``verify``, ``inspect`` and ``demo`` over the shared stages."""
