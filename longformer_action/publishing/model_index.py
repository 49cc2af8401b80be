"""The Hub card's ``model-index`` entry for the score ``ModelCheckpoint`` recorded: a monitored name read as a metric.

For the Hub card's ``model-index`` (huggingface_hub's ``EvalResult``; the spec in hub-docs ``modelcard.md``: task
``type``, dataset ``type`` and ``name``, metric ``type`` and ``value`` are required) the metric's name is mapped to
an evaluate metric id (https://hf.co/metrics), the ids transformers' Trainer puts in its cards. A checkpoint does
not name its validation data, so the dataset is ``unnamed``, described as the training run's own validation (or
test) data: a type that names no Hub dataset, so the score is never shown as a result on a public benchmark. A
loss is not put in the ``model-index``: it is no metric id, and its value depends on the training objective
(weights, smoothing, reduction), so it compares with nothing; the card's text can still show it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``EvalResult.dataset_type`` when the checkpoint does not say which data the score was computed on.
UNNAMED_DATASET_TYPE = "unnamed"
#: The split a monitored name's words stand for; ``None``: a training-set score, never an evaluation.
_SPLITS = {
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "eval": "validation",
    "evaluation": "validation",
    "test": "test",
    "train": None,
    "training": None,
}
#: Words Lightning or a logger adds around the metric's name: ``val_acc_epoch``, ``ptl/val_accuracy``.
_NOISE = {"epoch", "step", "ptl", "metrics", "metric", "score", "avg", "mean"}
#: Metric names, as the words left once the split and the noise are removed, to evaluate metric ids.
_METRIC_TYPES = {
    "acc": "accuracy",
    "accuracy": "accuracy",
    "f1": "f1",
    "f": "f1",
    "fmeasure": "f1",
    "precision": "precision",
    "prec": "precision",
    "recall": "recall",
    "exact_match": "exact_match",
    "em": "exact_match",
    "exact": "exact_match",
    "rouge": "rouge",
    "rouge1": "rouge",
    "rouge2": "rouge",
    "rougel": "rouge",
    "rougelsum": "rouge",
    "bleu": "bleu",
    "sacrebleu": "sacrebleu",
    "meteor": "meteor",
    "mcc": "matthews_correlation",
    "matthews": "matthews_correlation",
    "matthews_correlation": "matthews_correlation",
    "pearson": "pearsonr",
    "pearsonr": "pearsonr",
    "spearman": "spearmanr",
    "spearmanr": "spearmanr",
    "auroc": "roc_auc",
    "roc_auc": "roc_auc",
    "auc": "roc_auc",
    "mse": "mse",
    "mae": "mae",
    "perplexity": "perplexity",
    "ppl": "perplexity",
    "wer": "wer",
    "cer": "cer",
}
#: The averaging an F1, precision or recall name states (``val_f1_macro``): evaluate's ``average`` argument.
_AVERAGES = ("macro", "micro", "weighted")
#: The Hub's names for the tasks the converted folders have (``pipeline_tag``), as transformers' cards name them.
_TASK_NAMES = {
    "question-answering": "Question Answering",
    "text-classification": "Text Classification",
    "token-classification": "Token Classification",
    "multiple-choice": "Multiple Choice",
    "fill-mask": "Masked Language Modeling",
    "feature-extraction": "Feature Extraction",
    "summarization": "Summarization",
    "text2text-generation": "Sequence-to-sequence Language Modeling",
}


@dataclass(frozen=True)
class KnownMetric:
    """A monitored name read as an evaluate metric: its id (``f1``), the split, and evaluate's arguments."""

    metric_type: str
    split: str
    args: Mapping[str, Any] = field(default_factory=dict)


def known_metric(monitor: str | None) -> KnownMetric | None:
    """The evaluate metric id and the split a monitored name stands for, or ``None``.

    ``val_f1``, ``val/acc``, ``valid_accuracy``, ``eval_rouge1``, ``val_f1_macro``, ``ptl/val_accuracy``,
    ``test_mcc_epoch`` are known. ``None`` for a name without a validation or test word (``acc`` alone, or
    ``train_acc``: a training-set score is no evaluation), for a loss, and for names no metric id matches.
    """
    if not monitor:
        return None
    words = [w for w in re.split(r"[/_\-.\s]+", monitor.lower()) if w]
    splits = [w for w in words if w in _SPLITS]
    if len(splits) != 1 or _SPLITS[splits[0]] is None:
        return None
    rest = [w for w in words if w not in _SPLITS and w not in _NOISE]
    average = next((w for w in rest if w in _AVERAGES), None)
    rest = [w for w in rest if w not in _AVERAGES]
    key = "_".join(rest)
    metric_type = _METRIC_TYPES.get(key) or _METRIC_TYPES.get(key.replace("_", ""))
    if metric_type is None:
        return None
    args = {"average": average} if average and metric_type in ("f1", "precision", "recall") else {}
    return KnownMetric(metric_type, str(_SPLITS[splits[0]]), args)


def eval_result(
    monitor: str | None,
    score: float | None,
    *,
    task_type: str,
    dataset_type: str | None = None,
    dataset_name: str | None = None,
) -> Any:
    """The Hub card's ``model-index`` entry for the score of the weights in the file, or ``None``.

    Args:
        monitor: the monitored metric's name (``ModelCheckpointState.monitor``).
        score: the score of the weights in the file (``ModelCheckpointState.file_score``; not the run's best
            score, which belongs to another file when this one is not the best).
        task_type: the Hub's task id, the folder's ``pipeline_tag`` (``text-classification``, ``summarization``).
        dataset_type, dataset_name: the Hub dataset id and a pretty name, only when the user names the data the
            score was computed on; by default ``unnamed`` and a name that says it is the run's own data.

    Returns:
        huggingface_hub's ``EvalResult`` (for ``ModelCardData(eval_results=[...], model_name=...)``), self-reported
        (``verified`` unset); ``None`` when the metric is not one the Hub knows (see ``known_metric``) or the file's
        own score is not recorded.
    """
    from huggingface_hub import EvalResult

    metric = known_metric(monitor)
    if metric is None or score is None:
        return None
    split = "validation" if metric.split == "validation" else "test"
    return EvalResult(
        task_type=task_type,
        task_name=_TASK_NAMES.get(task_type),
        dataset_type=dataset_type or UNNAMED_DATASET_TYPE,
        dataset_name=dataset_name or f"the training run's {split} data (the checkpoint does not name it)",
        dataset_split=metric.split,
        metric_type=metric.metric_type,
        metric_value=score,
        metric_name=monitor,
        metric_args=dict(metric.args) or None,
    )
