"""The write stage: the output folder's files, written beside ``--output`` and published all or nothing."""
