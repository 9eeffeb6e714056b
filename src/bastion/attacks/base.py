"""The attack base class: the guarantees every attack gives, applied once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bastion.attacks._ops import clip_to_bounds, distances, project
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS, Entry, config_model
from bastion.core.results import AttackResult
from bastion.core.targets.base import Target
from bastion.core.threat import Norm, Threat

__all__ = ["Attack", "Configurable", "RunLog"]


@dataclass
class RunLog:
    """What an attack notes while it runs, beyond its adversarial inputs."""

    notes: list[str] = field(default_factory=list)
    queries_per_sample: torch.Tensor | None = None
    #: whether the gradients have been checked for masking (once per run)
    gradients_checked: bool = False


class Configurable:
    """What every registered attack shares, whatever its family: hyperparameters stored
    unchanged as keyword arguments (the scikit-learn convention), a ``repr`` made of them, and
    its registry entry. Subclasses may override :meth:`_check_params`."""

    registry_name: ClassVar[str]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given."""
        return {name: getattr(self, name) for name in config_model(type(self)).model_fields}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def entry(self) -> Entry:
        """This attack's registry entry; a one-line error for a class never registered."""
        name = getattr(type(self), "registry_name", None)
        entry = ATTACKS.get(name) if name is not None and name in ATTACKS else None
        if entry is None or entry.cls is not type(self):
            raise ConfigError(
                f"{type(self).__name__} is not a registered attack (a base class, or a subclass "
                "not yet registered): use a registered one, or decorate it with @register_attack"
            )
        return entry

    def _check_params(self) -> None:
        """Raise :class:`ConfigError` for hyperparameters that make no sense."""

    def _at_least(self, **minimums: float) -> None:
        """Refuse any named hyperparameter below its minimum, with the one message for it."""
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum:g}, got {value}")


class Attack(Configurable):
    """Base class of every evasion attack.

    An attack holds only its own hyperparameters, as keyword arguments stored unchanged (the
    scikit-learn convention), and receives the target, the data and the threat when it runs.
    :meth:`run` gives the guarantees every attack shares: the target gives enough access and
    the norm is supported, inputs are checked, the model is in evaluation mode during the attack
    and in its old mode after, the result lies in the epsilon ball and the bounds, keeps the
    inputs' dtype and device, and its success is measured on the target.

    Subclasses implement :meth:`_attack`, and may override :meth:`_check_params`.
    """

    def queries_per_input(self, threat: Threat) -> int:
        """A query-based attack's budget per input: its ``max_queries``, lowered by the
        threat's ``queries_per_input`` (a scan's fair share of a target's budget)."""
        budget = int(getattr(self, "max_queries"))  # noqa: B009 - only query-based attacks ask
        if threat.queries_per_input is not None:
            budget = min(budget, threat.queries_per_input)
        return budget

    # ------------------------------------------------------------------ running
    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat | None = None,
        *,
        eps: float | None = None,
        norm: Norm | str | None = None,
        seed: int = 0,
    ) -> AttackResult:
        """Attack ``x`` (true labels ``y``, or target labels if the threat is targeted).

        Give a single-epsilon ``threat``, or ``eps`` (and ``norm``) to build one, or both to
        pick ``eps`` from the threat's sweep.
        """
        threat = _resolve_threat(threat, eps, norm)
        entry = self.entry
        entry.require(access=target.access, norm=threat.norm, target=target.name)
        self._check_params()
        threat.check_bounds(target.bounds)
        target.check_inputs(x, y)

        device, dtype = x.device, x.dtype
        xs = x.detach().to(target.device)
        ys = y.detach().to(target.device).long()
        generator = torch.Generator().manual_seed(seed)
        queries_before = target.queries
        started = time.perf_counter()
        log = RunLog()
        with target.inference_mode():
            x_adv = self._attack(target, xs, ys, threat, generator, log)
            delta = project(x_adv.detach() - xs, threat.norm, threat.epsilon)
            x_adv = clip_to_bounds(xs + delta, target.bounds).to(dtype)
            with torch.no_grad():
                outputs = target.outputs(x_adv)
        success = threat.goal.is_success(outputs, ys)
        predictions = outputs if outputs.ndim == 1 else outputs.argmax(dim=1)
        return AttackResult(
            attack=entry.name,
            threat=threat,
            x_adv=x_adv.to(device),
            success=success.to(device),
            distances=distances(x_adv - xs, threat.norm).to(device),
            predictions=predictions.to(device),
            queries=target.queries - queries_before,
            seconds=time.perf_counter() - started,
            queries_per_sample=log.queries_per_sample,
            notes=log.notes,
        )

    __call__ = run

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        """The adversarial inputs for ``x``; the base class projects and measures them."""
        raise NotImplementedError


def _resolve_threat(threat: Threat | None, eps: float | None, norm: Norm | str | None) -> Threat:
    if threat is None:
        if eps is None:
            raise ConfigError("give a threat or an epsilon")
        return Threat(norm=Norm.parse(norm or Norm.LINF), epsilons=(float(eps),))
    if norm is not None and Norm.parse(norm) is not threat.norm:
        raise ConfigError(f"norm {norm} contradicts the threat's norm {threat.norm.value}")
    if eps is not None:
        if float(eps) not in threat.epsilons and len(threat.epsilons) > 1:
            raise ConfigError(f"epsilon {eps} is not in the threat's sweep {threat.epsilons}")
        return threat.at(eps)
    _ = threat.epsilon  # raises for a sweep
    return threat
