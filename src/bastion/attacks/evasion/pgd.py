"""Projected Gradient Descent."""

from __future__ import annotations

from bastion.attacks.evasion.gradient import GradientAttack
from bastion.core.registry import register_attack
from bastion.core.threat import Access, Norm

__all__ = ["PGD"]


@register_attack(
    "pgd",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2, Norm.L1),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=20,
    defaults={"steps": 40},
    fast={"steps": 10},
)
class PGD(GradientAttack):
    """Many small gradient steps from a random start, projected back into the epsilon ball.

    Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant
    to Adversarial Attacks", 2017, arXiv:1706.06083.

    Under L1 each step moves the largest 5% of the gradient's entries (those not pushing a
    feature past its bound), the sparse steepest ascent of Tramer and Boneh (2019).

    Threat: white-box; Linf, L2 or L1; untargeted or targeted.

    Args:
        steps: gradient steps per restart (40).
        rel_stepsize: step size as a fraction of epsilon (None: ``2.5 / steps``, Madry et
            al.'s rule); ignored when ``abs_stepsize`` is given.
        abs_stepsize: step size in input units.
        random_start: begin each restart at a uniform random point of the ball (True).
        restarts: independent runs; the worst case per sample is kept (1).
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (the CW margin on scores), ``"dlr"``
            (Croce and Hein's scale-free difference of logits ratio) or ``"dlr-targeted"``.
        eot_samples: gradients averaged over this many forward passes (expectation over
            transformation, for randomized models) (1).
        early_stop: stop each input as soon as it reaches the goal (True); without it every
            input takes every step, as in the paper.

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> result = PGD(steps=40).run(target, x, y, eps=0.3, norm="linf")  # doctest: +SKIP
        >>> result.success.float().mean()  # doctest: +SKIP
    """
