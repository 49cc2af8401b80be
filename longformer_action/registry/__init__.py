"""The registry: what differs between tasks and model families, as data (only what transformers does not know)."""
