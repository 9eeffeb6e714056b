"""A watermark in a model's answers that survives extraction, and a test that finds it.

:class:`WatermarkedTarget` serves a model and, for a small keyed share of the inputs it is
asked about, answers a wrong class chosen by the key; it records those inputs and answers. A
copy trained on its answers (an extraction attack) learns the wrong answers with the rest,
while an independently trained model has no reason to give them. :func:`verify_ownership`
asks a suspect model about the recorded inputs and gives the probability of its agreement
under the hypothesis that it was made independently of the watermark: a binomial tail at the
null rate. With more than two classes the test needs no reference models: the wrong class
is drawn uniformly from the ``C - 1`` classes other than the served model's, and a model made
without the key matches it, where it disagrees with the served model, one time in ``C - 1``;
with two classes the null rate is measured on reference models.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bastion.core.errors import ConfigError, DataError
from bastion.core.targets.base import Target
from bastion.core.threat import Access

__all__ = ["OwnershipResult", "WatermarkedTarget", "null_agreement", "verify_ownership"]


class WatermarkedTarget(Target):
    """Serve ``inner`` with a dynamic watermark in its answers: a keyed hash of each input
    picks about ``rate`` of all inputs, and for those the answer names another class (also
    chosen by the key); the same input always gets the same answer. The inputs so answered
    and their answers are kept (up to ``max_records``) for :func:`verify_ownership`.

    Paper: Szyller, Atli, Marchal, Asokan, "DAWN: Dynamic Adversarial Watermarking of Neural
    Networks", ACM Multimedia 2021, arXiv:1906.00830.

    Threat it counters: extraction through the model's answers (ATLAS AML.T0024.002) and the
    theft of the copy (AML.T0048.004): it does not stop the copy, it lets the owner prove it.
    Mitigation: AIDEFEND AID-DV-004 (output watermarking and telemetry traps). It costs
    accuracy: about ``rate`` of the answers are wrong.

    Args:
        inner: the model served (any target; its gradients are not passed on).
        rate: the share of inputs answered wrongly (0.02).
        key: the secret that picks the inputs and the wrong classes (bytes or a string).
        max_records: watermarked answers kept at most (10,000; the oldest are dropped).

    Example:
        >>> served = WatermarkedTarget(model, key="owner-secret")  # doctest: +SKIP
        >>> verify_ownership(suspect, served).p_value  # doctest: +SKIP
    """

    def __init__(
        self,
        inner: Target,
        *,
        rate: float = 0.02,
        key: bytes | str = b"bastion",
        max_records: int = 10_000,
        name: str | None = None,
    ) -> None:
        if not 0 < rate < 0.5:
            raise ConfigError(f"watermark rate must be in (0, 0.5), got {rate}")
        if max_records < 1:
            raise ConfigError("watermark max_records must be at least 1")
        super().__init__(
            num_classes=inner.num_classes,
            bounds=inner.bounds,
            input_shape=inner.input_shape,
            name=name or f"{inner.name}+watermark",
        )
        self.inner = inner
        self.rate = rate
        self.key = key.encode() if isinstance(key, str) else bytes(key)
        self.max_records = max_records
        self.output_kind = inner.output_kind
        self.access = Access.SCORES if inner.access.rank >= Access.SCORES.rank else inner.access
        self._records: dict[bytes, tuple[np.ndarray, int, int]] = {}
        self._records_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def inference_mode(self) -> Any:
        return self.inner.inference_mode()

    def _draw(self, row: np.ndarray) -> tuple[bool, int, bytes]:
        digest = hmac.new(self.key, row.tobytes(), hashlib.sha256).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        return u < self.rate, int.from_bytes(digest[8:16], "big"), digest

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner._forward(x)
        rows = x.detach().float().cpu().numpy().reshape(len(x), -1)
        labels = out if out.ndim == 1 else out.argmax(dim=1)
        out = out.clone()
        for i, row in enumerate(rows):
            chosen, draw, digest = self._draw(row)
            if not chosen:
                continue
            top = int(labels[i])
            wrong = (top + 1 + draw % (self.num_classes - 1)) % self.num_classes
            if out.ndim == 1:
                out[i] = wrong
            else:  # swap the two scores: the wrong class now leads, the scores stay valid
                a, b = out[i, top].clone(), out[i, wrong].clone()
                out[i, top], out[i, wrong] = b, a
            with self._records_lock:
                self._records[digest] = (row.reshape(x.shape[1:]), wrong, top)
                while len(self._records) > self.max_records:
                    self._records.pop(next(iter(self._records)))
        return out

    def records(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The watermarked inputs answered so far, the classes answered for them, and the
        classes the model itself gave them."""
        with self._records_lock:
            items = list(self._records.values())
        shape = self.input_shape or ()
        if not items:
            empty = torch.empty(0, dtype=torch.long)
            return torch.empty((0, *shape)), empty, empty
        x = torch.from_numpy(np.stack([r for r, _, _ in items]))
        answered = torch.tensor([w for _, w, _ in items], dtype=torch.long)
        return x, answered, torch.tensor([t for _, _, t in items], dtype=torch.long)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["watermark"] = {"rate": self.rate, "records": len(self._records)}
        out["inner"] = self.inner.describe()
        return out


@dataclass
class OwnershipResult:
    """Whether a suspect model carries the watermark.

    Attributes:
        matches: recorded inputs on which the suspect gives the watermark's class.
        records: recorded inputs asked about.
        trials: the records the test counts: those on which the suspect disagrees with the
            served model's own answer (the conditional test), or every record.
        null_rate: the chance of a match per trial for an independently made model.
        method: ``conditional`` (exact, needs more than two classes), ``references`` (the
            null rate measured on reference models), ``given`` or ``bound``.
        p_value: the probability of at least ``matches`` in ``trials`` at ``null_rate``.
        alpha: the significance level of the claim.
        queries: queries spent on the suspect.
    """

    matches: int
    records: int
    trials: int
    null_rate: float
    method: str
    p_value: float
    alpha: float
    queries: int

    @property
    def agreement(self) -> float:
        return self.matches / max(self.records, 1)

    @property
    def copied(self) -> bool:
        """Whether the evidence supports the claim that the suspect was copied."""
        return self.p_value < self.alpha


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


def _upper_bound(hits: int, total: int, level: float = 0.025) -> float:
    """The Clopper-Pearson upper bound of a binomial rate: the largest ``p`` under which
    ``hits`` or fewer successes still have probability at least ``level``."""
    if hits >= total:
        return 1.0
    lo, hi = hits / total, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        # P(X <= hits) = 1 - P(X >= hits + 1)
        if 1 - _binomial_tail(hits + 1, total, mid) > level:
            lo = mid
        else:
            hi = mid
    return hi


def null_agreement(
    references: list[Target], x: torch.Tensor, labels: torch.Tensor
) -> tuple[int, int]:
    """``(agreements, answers)`` of independently made ``references`` with ``labels``."""
    hits = total = 0
    for ref in references:
        hits += int((ref.predict(x).cpu() == labels.cpu()).sum())
        total += len(labels)
    return hits, total


def verify_ownership(
    suspect: Target,
    watermark: WatermarkedTarget | tuple[torch.Tensor, ...],
    *,
    null_rate: float | None = None,
    references: list[Target] | None = None,
    alpha: float = 0.01,
) -> OwnershipResult:
    """Test whether ``suspect`` was copied from the watermarked model.

    Asks the suspect (labels suffice) about the watermark's recorded inputs and counts how
    often it gives the watermark's class. ``watermark`` is the served target, or its records
    ``(x, answered)`` or ``(x, answered, own)``.

    The test, by default, is conditional and exact: on every record where the suspect's
    class differs from the served model's own, an independently made model gives the
    watermark's class with probability ``1 / (C - 1)`` (the key drew it uniformly from those
    ``C - 1`` classes), so the matches are binomial over those records. Given ``null_rate``,
    or ``references`` (models made independently, say by the owner with other seeds; the
    null rate is the upper end of the 95% Clopper-Pearson interval of their agreement), every
    record counts instead; with two classes one of these is needed. A copy of the weights
    themselves (not trained on the answers) does not carry this watermark.
    """
    own: torch.Tensor | None
    if isinstance(watermark, WatermarkedTarget):
        x, labels, own = watermark.records()
    elif len(watermark) in (2, 3):
        x, labels = watermark[0], watermark[1]
        own = watermark[2] if len(watermark) == 3 else None
    else:
        raise DataError("watermark records are (x, answered) or (x, answered, own)")
    if len(x) == 0:
        raise DataError("the watermark has no records yet: nothing was answered with it")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    k = suspect.num_classes
    if k == 2 and null_rate is None and not references:
        raise ConfigError(
            "with two classes the null rate needs reference models (references=) or a null_rate"
        )
    if null_rate is not None and not 0 < null_rate < 1:
        raise ConfigError(f"null_rate must be in (0, 1), got {null_rate}")
    before = suspect.queries
    pred = suspect.predict(x.to(suspect.device)).cpu()
    matches = int((pred == labels.cpu()).sum())
    trials = len(labels)
    if null_rate is not None:
        method = "given"
    elif references:
        hits, total = null_agreement(references, x, labels)
        null_rate, method = _upper_bound(hits, total), "references"
    elif own is not None:
        trials = int((pred != own.cpu()).sum())
        null_rate, method = 1 / (k - 1), "conditional"
    else:
        null_rate, method = 1 / (k - 1), "bound"
    return OwnershipResult(
        matches=matches,
        records=len(labels),
        trials=trials,
        null_rate=float(null_rate),
        method=method,
        p_value=_binomial_tail(matches, trials, null_rate),
        alpha=alpha,
        queries=suspect.queries - before,
    )
