"""The command line's and the action's choices, as data (standard library only: the action's runner-side
scripts import it with the runner's own Python)."""

from __future__ import annotations

#: The base model used when ``--base-model`` (the action's ``base-model``) is not given.
DEFAULT_BASE_MODEL = "allenai/longformer-base-4096"


#: ``--dtype`` values: ``keep`` is the checkpoint's own dtype.
DTYPES = ("keep", "float32", "float16", "bfloat16")


#: ``--task`` values: ``auto`` reads the task from the head's keys and shapes; the others are the
#: registry's tasks (``registry/tasks.py``), named as optimum and transformers' pipelines name them.
TASKS = (
    "auto",
    "question-answering",
    "text-classification",
    "token-classification",
    "multiple-choice",
    "fill-mask",
    "feature-extraction",
    "text2text-generation",
)


#: ``--global-attention`` values: what the LightningModule passed as ``global_attention_mask``.
#: ``default`` is the task's class default; ``after-question`` is multiple choice's own rule.
GLOBAL_ATTENTION = ("default", "none", "first-token", "question", "after-question")


#: ``--problem-type`` values (``config.problem_type`` of text classification).
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
