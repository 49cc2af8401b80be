"""The commands' work: ``convert``, ``verify`` and ``inspect`` over the shared stages."""
