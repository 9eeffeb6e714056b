"""Universal adversarial perturbation: one small perturbation that fools the model on most
inputs at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks._ops import project
from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["UniversalPerturbation"]

# the per-input loss is capped, so inputs already far past the boundary stop pulling the
# perturbation their way and the rest get their share (Shafahi et al., section 3)
_LOSS_CAP = 5.0


@register_attack(
    "uap",
    family="universal",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=40,
    defaults={"steps": 150},
    fast={"steps": 40},
)
class UniversalPerturbation(Attack):
    """One perturbation for every input, fitted to fool the model on as many as it can.

    This is the gradient variant, not the DeepFool-based original: stochastic projected
    gradient ascent on the mean capped cross-entropy of minibatches (Shafahi et al.), one
    signed (Linf) or normalized (L2) step per minibatch, with the step size decaying linearly
    from ``rel_stepsize * eps``, and a projection onto the epsilon ball after each step.
    :meth:`fit` learns ``perturbation_`` on one set of inputs; :meth:`fooling_rate` measures it
    on others. As an attack (:meth:`run`) it fits on the batch under attack and adds the same
    perturbation to every input. It is registered in the ``universal`` family, so a scan runs
    it only when named (``--attacks uap``).

    Paper: Moosavi-Dezfooli, Fawzi, Fawzi, Frossard, "Universal adversarial perturbations",
    2017, arXiv:1610.08401; the stochastic gradient variant: Shafahi, Najibi, Xu, Dickerson,
    Davis, Goldstein, "Universal Adversarial Training", 2020, arXiv:1812.03705.

    Threat: white-box; Linf or L2; untargeted or targeted (one perturbation towards the
    target labels given).

    Args:
        steps: minibatch steps (150).
        batch_size: inputs per step (32).
        rel_stepsize: the first step's size as a fraction of epsilon (0.1).

    Returns: :meth:`fit` returns the attack, with ``perturbation_`` (one input's shape);
    :meth:`run` an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> uap = UniversalPerturbation().fit(target, x_train, y_train, eps=0.1)  # doctest: +SKIP
        >>> uap.fooling_rate(target, x_test)  # doctest: +SKIP
    """

    def __init__(
        self, *, steps: int = 150, batch_size: int = 32, rel_stepsize: float = 0.1
    ) -> None:
        self.steps = steps
        self.batch_size = batch_size
        self.rel_stepsize = rel_stepsize

    def _check_params(self) -> None:
        self._at_least(steps=1, batch_size=1)
        if self.rel_stepsize <= 0:
            raise ConfigError(f"rel_stepsize must be positive, got {self.rel_stepsize}")

    def _train(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
    ) -> torch.Tensor:
        eps, norm = threat.epsilon, threat.norm
        lo, hi = target.bounds
        v = torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
        for t in range(self.steps):
            pick = torch.randperm(len(x), generator=generator)[: self.batch_size].to(x.device)
            v_ = v.clone().requires_grad_(True)
            scores = target((x[pick] + v_).clamp(lo, hi))
            loss = F.cross_entropy(scores, y[pick], reduction="none")
            objective = (-loss if threat.targeted else loss.clamp(max=_LOSS_CAP)).mean()
            (grad,) = torch.autograd.grad(objective, v_)
            size = self.rel_stepsize * eps * (1 - t / self.steps)
            unit = grad.sign() if norm is Norm.LINF else grad / grad.norm().clamp_min(1e-12)
            v = project(v + size * unit, norm, eps).detach()
        return v[0]

    def fit(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float,
        norm: Norm | str = Norm.LINF,
        targeted: bool = False,
        seed: int = 0,
    ) -> UniversalPerturbation:
        """Learn ``perturbation_`` on ``x`` (labels ``y``, or target labels when ``targeted``)
        within the ``norm`` ball of radius ``eps``; returns the attack."""
        threat = Threat(norm=Norm.parse(norm), epsilons=(float(eps),), targeted=targeted)
        self.entry.require(access=target.access, norm=threat.norm, target=target.name)
        self._check_params()
        threat.check_bounds(target.bounds)
        target.check_inputs(x, y)
        generator = torch.Generator().manual_seed(seed)
        xs = x.detach().to(target.device)
        with target.inference_mode():
            self.perturbation_ = self._train(
                target, xs, y.detach().to(target.device).long(), threat, generator
            )
        self.threat_ = threat
        return self

    def fooling_rate(
        self, target: Target, x: torch.Tensor, *, perturbation: torch.Tensor | None = None
    ) -> tuple[int, int]:
        """How many of ``x`` change their predicted label when ``perturbation`` (default:
        ``perturbation_``) is added (clipped to the bounds): ``(changed, inputs)``, the fooling
        rate of Moosavi-Dezfooli et al. as a count."""
        v = perturbation if perturbation is not None else getattr(self, "perturbation_", None)
        if v is None:
            raise ConfigError("the perturbation is not fitted yet: call fit() first")
        target.check_inputs(x)
        xs = x.detach().to(target.device)
        v = v.to(device=xs.device, dtype=xs.dtype)
        with target.inference_mode(), torch.no_grad():
            before = target.predict(xs)
            after = target.predict((xs + v).clamp(*target.bounds))
        return int((before != after).sum()), len(xs)

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        v = self._train(target, x, y, threat, generator)
        self.perturbation_ = v
        return x + v.unsqueeze(0)
