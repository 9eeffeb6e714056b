"""What every extraction attack shares: the query budget, the copy, and its measurement.

An extraction attack queries a black-box target and trains a copy of it. The base class
applies, once, what every such attack guarantees: the target gives the access the attack
needs, the attack spends at most its query budget (and never more than the target's own budget
allows), the victim's answers on the evaluation inputs are asked once and counted apart from
the attack's queries, and the copy's fidelity (agreement with the victim) and accuracy are
measured as the queries grow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bastion.attacks.base import Configurable
from bastion.core.errors import ConfigError, DataError, QueryBudgetExceeded
from bastion.core.targets.base import Target
from bastion.core.targets.torch import TorchTarget
from bastion.core.threat import OutputKind

__all__ = ["Extraction", "ExtractionLog", "ExtractionPoint", "ExtractionResult"]


@dataclass
class ExtractionPoint:
    """The copy measured after ``queries`` queries."""

    queries: int
    fidelity: float | None
    accuracy: float | None


@dataclass
class ExtractionResult:
    """What an extraction attack stole.

    Attributes:
        attack: the registry name.
        copy: the stolen model, a module mapping inputs to (N, C) logits.
        queries: queries the attack spent (the evaluation's are apart: ``eval_queries``).
        curve: the copy's fidelity and accuracy after each round.
        fidelity: the final copy's agreement with the victim's labels on the evaluation
            inputs (None without them).
        accuracy: the final copy's accuracy on the evaluation labels (None without them).
        agreed: ``(agreeing, evaluated)`` behind ``fidelity``.
        eval_queries: queries spent asking the victim about the evaluation inputs.
        seconds: wall time.
        notes: what the attack noted (a budget cut short, a fallback).
        params: the attack's parameters.
    """

    attack: str
    copy: nn.Module
    num_classes: int
    bounds: tuple[float, float]
    input_shape: tuple[int, ...]
    queries: int
    curve: list[ExtractionPoint]
    fidelity: float | None
    accuracy: float | None
    agreed: tuple[int, int] | None
    eval_queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def as_target(self, name: str | None = None) -> TorchTarget:
        """The copy as a white-box target: the adversary's own model to attack offline."""
        return TorchTarget(
            self.copy,
            num_classes=self.num_classes,
            bounds=self.bounds,
            input_shape=self.input_shape,
            name=name or f"copy by {self.attack}",
        )


class ExtractionLog:
    """The attack's view of its budget and of the measurement: :meth:`ask` queries the victim
    within the budget, :meth:`measure` records the copy's fidelity at this point."""

    def __init__(
        self,
        target: Target,
        budget: int,
        soft: bool,
        x_eval: torch.Tensor | None,
        victim_eval: torch.Tensor | None,
        y_eval: torch.Tensor | None,
    ) -> None:
        self.target = target
        self.budget = budget
        self.soft = soft
        self.spent = 0
        self.curve: list[ExtractionPoint] = []
        self.notes: list[str] = []
        self._x_eval = x_eval
        self._victim_eval = victim_eval
        self._y_eval = y_eval
        self.last_agreed: tuple[int, int] | None = None

    @property
    def left(self) -> int:
        return self.budget - self.spent

    def ask(self, x: torch.Tensor) -> torch.Tensor:
        """The victim's answers for ``x``: (N, C) probabilities when the attack learns from
        scores, else (N,) labels. Refuses to pass the attack's budget."""
        n = int(x.shape[0])
        if n > self.left:
            raise QueryBudgetExceeded(
                f"the extraction's budget is {self.budget} queries; {self.spent} spent, {n} asked"
            )
        self.spent += n
        if not self.soft:
            return self.target.predict(x)
        out = self.target.outputs(x)
        if self.target.output_kind is OutputKind.LOGITS:
            out = out.softmax(dim=1)
        return out.float()

    def measure(self, copy: nn.Module) -> ExtractionPoint:
        """Record the copy's fidelity and accuracy now (no victim queries: its answers on the
        evaluation inputs were asked once, before the attack)."""
        fidelity = accuracy = None
        if self._x_eval is not None and self._victim_eval is not None:
            pred = _predict(copy, self._x_eval)
            agree = int((pred == self._victim_eval).sum())
            self.last_agreed = (agree, len(pred))
            fidelity = agree / max(len(pred), 1)
            if self._y_eval is not None:
                accuracy = float((pred == self._y_eval).float().mean())
        point = ExtractionPoint(self.spent, fidelity, accuracy)
        self.curve.append(point)
        return point


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + 1024]).argmax(dim=1) for i in range(0, len(x), 1024)])


class Extraction(Configurable):
    """Base class of the extraction attacks: query a black box and train a copy of it.

    Subclasses implement :meth:`_extract`, spending queries through ``log.ask`` and calling
    ``log.measure(copy)`` after each round, and say whether they learn from scores.
    """

    #: whether the attack learns from the victim's scores (else from its labels only)
    uses_scores: bool = False

    def run(
        self,
        target: Target,
        x_seed: torch.Tensor | None = None,
        *,
        x_eval: torch.Tensor | None = None,
        y_eval: torch.Tensor | None = None,
        max_queries: int | None = None,
        seed: int = 0,
    ) -> ExtractionResult:
        """Steal ``target``.

        Args:
            target: the victim, any target giving at least the access the attack needs.
            x_seed: the adversary's own inputs (natural or out-of-distribution data, no
                labels), where the attack starts; attacks that make their own need none.
            x_eval, y_eval: inputs (and their true labels) on which fidelity and accuracy are
                measured; the victim is asked about them once, apart from the attack.
            max_queries: the attack's budget (default: its own ``max_queries`` setting); the
                target's own budget, when smaller, bounds it too.
            seed: seeds every random choice.
        """
        entry = self.entry
        entry.require(access=target.access, norm=None, target=target.name)
        self._check_params()
        if target.input_shape is None and x_seed is None and x_eval is None:
            raise DataError(f"{target.name} declares no input shape: give inputs to start from")
        for part in (x_seed, x_eval):
            if part is not None:
                target.check_inputs(part)
        budget = int(max_queries if max_queries is not None else getattr(self, "max_queries", 0))
        if budget < 1:
            raise ConfigError(f"an extraction needs a budget of at least 1 query, got {budget}")
        started = time.perf_counter()
        queries_before = target.queries
        victim_eval = None
        if x_eval is not None:
            victim_eval = target.predict(x_eval.detach())
            if y_eval is not None and len(y_eval) != len(x_eval):
                raise DataError(f"{len(x_eval)} evaluation inputs but {len(y_eval)} labels")
        eval_queries = target.queries - queries_before
        if target.queries_left is not None and target.queries_left < budget:
            budget = target.queries_left
        if budget < 1:
            raise QueryBudgetExceeded(f"{target.name} has no queries left for the extraction")
        soft = self.uses_scores and target.output_kind is not OutputKind.LABELS
        # the copy lives on the CPU, and so does what it is measured on
        log = ExtractionLog(
            target,
            budget,
            soft,
            None if x_eval is None else x_eval.detach().float().cpu(),
            None if victim_eval is None else victim_eval.cpu(),
            None if y_eval is None else y_eval.cpu(),
        )
        generator = torch.Generator().manual_seed(seed)
        shape = target.input_shape or tuple(
            (x_seed if x_seed is not None else x_eval).shape[1:]  # type: ignore[union-attr]
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            copy = self._extract(target, x_seed, tuple(shape), generator, log)
        if not log.curve or log.curve[-1].queries != log.spent:
            log.measure(copy)
        final = log.curve[-1]
        return ExtractionResult(
            attack=entry.name,
            copy=copy,
            num_classes=target.num_classes,
            bounds=target.bounds,
            input_shape=tuple(shape),
            queries=log.spent,
            curve=log.curve,
            fidelity=final.fidelity,
            accuracy=final.accuracy,
            agreed=log.last_agreed,
            eval_queries=eval_queries,
            seconds=time.perf_counter() - started,
            notes=log.notes,
            params=self.get_params(),
        )

    __call__ = run

    def _extract(
        self,
        target: Target,
        x_seed: torch.Tensor | None,
        input_shape: tuple[int, ...],
        generator: torch.Generator,
        log: ExtractionLog,
    ) -> nn.Module:
        raise NotImplementedError


def round_sizes(budget: int, rounds: int) -> list[int]:
    """The budget spent over ``rounds`` rounds, each twice the one before (a few queries
    first, to learn where to ask next), as whole queries summing to ``budget``."""
    rounds = max(1, min(rounds, budget))
    weights = [2.0**i for i in range(rounds)]
    total = sum(weights)
    sizes = [max(1, int(budget * w / total)) for w in weights]
    sizes[-1] += budget - sum(sizes)
    return [s for s in sizes if s > 0]
