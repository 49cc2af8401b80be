"""The read stage: a checkpoint file or folder, read without running its code, into one ``Checkpoint``."""
