"""What a robustness test reads: figures that carry their interval, and the result around them.

Nothing here imports torch or numpy: pytest's plugin reads these types in every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.core.assessment import Assessment

__all__ = ["Figure", "RobustnessResult", "explain_comparison"]


class Figure(float):
    """A measured rate that is still a float (compare it, do sums with it) but carries its
    95% interval, its count and where it was measured, and shows them in its ``repr``, so
    that a failing ``assert r.robust_accuracy >= 0.6`` says more than a bare number.

    ``str()`` and ``format()`` give the plain number.
    """

    name: str
    interval: tuple[float, float] | None
    count: tuple[int, int] | None
    setting: str

    def __new__(
        cls,
        value: float,
        *,
        name: str,
        interval: tuple[float, float] | None = None,
        count: tuple[int, int] | None = None,
        setting: str = "",
    ) -> Figure:
        self = super().__new__(cls, value)
        self.name = name
        self.interval = interval
        self.count = count
        self.setting = setting
        return self

    def details(self) -> str:
        """``95% CI 0.33-0.52, 42/100 inputs, linf eps=0.1``: what stands beside the figure."""
        parts = []
        if self.interval is not None:
            parts.append(f"95% CI {self.interval[0]:.2f}-{self.interval[1]:.2f}")
        if self.count is not None:
            parts.append(f"{self.count[0]}/{self.count[1]} inputs")
        if self.setting:
            parts.append(self.setting)
        return ", ".join(parts)

    def describe(self) -> str:
        """``robust accuracy 0.42 (95% CI 0.33-0.52, 42/100 inputs, linf eps=0.1)``."""
        return f"{self.name} {self!r}"

    def __repr__(self) -> str:
        shown = f"{float(self):.3g}"
        details = self.details()
        return f"{shown} ({details})" if details else shown

    def __str__(self) -> str:
        return float.__repr__(self)

    def __format__(self, spec: str) -> str:
        return float(self).__format__(spec)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_figure, (float(self), self.name, self.interval, self.count, self.setting))


def _figure(
    value: float,
    name: str,
    interval: tuple[float, float] | None,
    count: tuple[int, int] | None,
    setting: str,
) -> Figure:
    return Figure(value, name=name, interval=interval, count=count, setting=setting)


@dataclass(frozen=True)
class RobustnessResult:
    """What :func:`bastion.testing.robustness` measured.

    Attributes:
        robust_accuracy: the share of the sampled inputs that every attack left correctly
            classified, as a :class:`Figure` (a float with its interval).
        clean_accuracy: the share correctly classified without attack, as a :class:`Figure`.
        interval: the robust accuracy's 95% Wilson interval.
        samples: how many inputs were attacked.
        eps: the perturbation size; ``norm``: its norm.
        attacks: the attacks that ran.
        complete: False when the run stopped early (a query budget).
        warnings: where the evaluation itself looks wrong (see the report's warnings).
        assessment: the scan in bastion's general shape (metrics, findings, artifacts), for
            a report: ``bastion.report.write_report(Report([r.assessment]), folder, ["html"])``.
    """

    robust_accuracy: Figure
    clean_accuracy: Figure
    interval: tuple[float, float]
    samples: int
    eps: float
    norm: str
    attacks: tuple[str, ...] = ()
    complete: bool = True
    warnings: tuple[str, ...] = ()
    assessment: Assessment | None = field(default=None, repr=False, compare=False)


#: what a failed ``figure op threshold`` means, in words
_OPS = {
    ">=": "is below",
    ">": "is not above",
    "<=": "is above",
    "<": "is not below",
    "==": "is not",
    "!=": "is",
}
_MIRROR = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "==": "==", "!=": "!="}


def explain_comparison(op: str, left: object, right: object) -> list[str] | None:
    """The lines pytest shows for a failed ``left op right`` where a side is a
    :class:`Figure` (None otherwise): the figure with its interval, and whether the
    threshold lies within that interval (then more samples would tell them apart)."""
    if isinstance(left, Figure) and op in _OPS and isinstance(right, (int, float)):
        figure, threshold = left, float(right)
    elif isinstance(right, Figure) and op in _OPS and isinstance(left, (int, float)):
        figure, threshold, op = right, float(left), _MIRROR[op]
    else:
        return None
    words = _OPS[op]
    lines = [f"{figure.describe()} {words} {threshold:g}"]
    if figure.interval is not None and op not in ("==", "!="):
        lo, hi = figure.interval
        if lo <= threshold <= hi:
            lines.append(
                f"{threshold:g} lies within the 95% interval: the figure cannot tell the model "
                "from one that meets the threshold; more samples would narrow the interval"
            )
        else:
            lines.append(
                f"{threshold:g} lies outside the 95% interval: the model misses the threshold "
                "beyond sampling noise"
            )
    return lines
