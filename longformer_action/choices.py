"""Choices shared by the command line, the conversion and the action's input check (standard library only)."""

#: The base model used when ``--base-model`` (the action's ``base-model``) is not given.
DEFAULT_BASE_MODEL = "allenai/longformer-base-4096"

#: ``--dtype`` values: ``keep`` is the checkpoint's own dtype.
DTYPES = ("keep", "float32", "float16", "bfloat16")

#: ``--task`` values.
TASKS = ("question-answering",)
