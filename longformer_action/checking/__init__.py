"""The check stage: prove the folder computes what the checkpoint computed, and that its files are right."""
