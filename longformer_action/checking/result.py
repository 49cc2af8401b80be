"""The check's result types: each output compared, each file checked, and the whole check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class OutputDiff:
    """One output of the forward pass, compared."""

    name: str
    shape: list[int]
    max_abs: float
    max_rel: float
    atol: float
    passed: bool


@dataclass
class NamedCheck:
    """One of the check's stages beside the tensors and the outputs: what it proved, and about which files.

    Attributes:
        name: ``tokenizer``, ``generation settings`` or ``recorded config``.
        files: the folder's files it reads.
        passed: ``True`` or ``False``; ``None`` when there was nothing to compare (``detail`` says why).
        detail: what was compared, for people.
        failures: one line per difference, naming the file and the field.
    """

    name: str
    files: list[str]
    passed: bool | None
    detail: str
    failures: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    """The outcome of the check; ``failures`` holds one human line per problem."""

    passed: bool
    dtype: str
    atol: float
    outputs: list[OutputDiff] = field(default_factory=list)
    tensors_compared: int = 0
    tensor_failures: list[str] = field(default_factory=list)
    loading: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checks: list[NamedCheck] = field(default_factory=list)

    def add(self, check: NamedCheck | None) -> None:
        """Record a named stage; its failures become the check's."""
        if check is not None:
            self.checks.append(check)
            self.failures.extend(check.failures)

    @property
    def max_abs_diff(self) -> float:
        """The largest absolute difference over all outputs (``inf`` when outputs could not be compared)."""
        return max((o.max_abs for o in self.outputs), default=float("inf"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the report."""
        data = asdict(self)
        data["max_abs_diff"] = self.max_abs_diff
        return data
