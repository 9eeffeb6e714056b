"""Naive against adaptive: what plain PGD says about a defended model, and what is true.

A preprocessing defence that rounds (bit depth, JPEG) has a zero gradient almost
everywhere; one that draws at random (resizing and padding) answers each pass differently.
Plain PGD through the real transform finds little to follow, and the defence looks strong.
:func:`bastion.evaluate` attacks it as an adaptive adversary would, through each transform's
differentiable stand-in (BPDA) and with gradients averaged over random draws (EOT), and
:func:`naive_vs_adaptive` puts the two figures side by side, with the undefended model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.assess.evaluate import evaluate
from bastion.assess.scan import ProgressFn, ScanResult, scan
from bastion.core.errors import ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import Threat
from bastion.data import Dataset
from bastion.defences.ensemble import EnsembleTarget
from bastion.defences.target import DefendedTarget

__all__ = ["NaiveVsAdaptive", "naive_target", "naive_vs_adaptive"]


@dataclass
class NaiveVsAdaptive:
    """The robust accuracy of one defended target under a naive and an adaptive attack.

    Attributes:
        naive: plain PGD (no BPDA, no EOT) against :func:`naive_target` of the target.
        adaptive: :func:`bastion.evaluate` of the target (BPDA, EOT when it is random).
        undefended: :func:`bastion.evaluate` of the model without its defences, on the same
            inputs (None when the target is not a :class:`DefendedTarget`, or when not asked).
    """

    naive: ScanResult
    adaptive: ScanResult
    undefended: ScanResult | None = None

    def rows(self) -> list[dict[str, float | None]]:
        """One row per epsilon: ``epsilon``, the defended model's ``clean`` accuracy, the
        robust accuracy under the ``naive`` and the ``adaptive`` attack, the naive figure's
        excess over the adaptive one (``overstated``), and the undefended model's
        ``undefended_clean`` and ``undefended`` robust accuracy (None without it)."""
        out: list[dict[str, float | None]] = []
        plain = (
            self.undefended.sweep
            if self.undefended is not None
            else [None] * len(self.adaptive.sweep)
        )
        for naive, adaptive, base in zip(self.naive.sweep, self.adaptive.sweep, plain, strict=True):
            out.append(
                {
                    "epsilon": adaptive.epsilon,
                    "clean": self.adaptive.clean_accuracy,
                    "naive": naive.robust_accuracy,
                    "adaptive": adaptive.robust_accuracy,
                    "overstated": naive.robust_accuracy - adaptive.robust_accuracy,
                    "undefended_clean": (
                        self.undefended.clean_accuracy if self.undefended is not None else None
                    ),
                    "undefended": base.robust_accuracy if base is not None else None,
                }
            )
        return out


def naive_target(target: Target) -> Target:
    """``target`` as a naive attacker sees it: every :class:`DefendedTarget` inside it (itself,
    or an :class:`EnsembleTarget`'s members) with gradients through its real transforms
    (``bpda=False``); any other target unchanged. The answers are the same."""
    if isinstance(target, DefendedTarget):
        return DefendedTarget(
            naive_target(target.inner),
            [*target.preprocessors, *target.postprocessors],
            name=target.name,
            bpda=False,
        )
    if isinstance(target, EnsembleTarget):
        return EnsembleTarget(
            [naive_target(m) for m in target.members],
            target.weights,
            target.combine,
            name=target.name,
        )
    return target


def naive_vs_adaptive(
    target: Target,
    data: Dataset,
    threat: Threat,
    *,
    preset: str = "standard",
    samples: int = 200,
    seed: int = 0,
    pgd_steps: int = 40,
    undefended: bool = True,
    attack_params: dict[str, dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> NaiveVsAdaptive:
    """Robust accuracy of a defended ``target`` under plain PGD and under the adaptive
    evaluation, on the same ``samples`` test inputs, at every epsilon of ``threat``.

    The naive figure is PGD (``pgd_steps`` steps, one random start) with gradients through
    the real transforms, no BPDA and no expectation over transformation: what a defence's
    robustness looks like to an evaluation that does not adapt. The adaptive figure is
    :func:`bastion.evaluate` with ``preset`` (``attack_params`` passed on to it). With
    ``undefended``, the model without its defences is evaluated the same way, for the
    honest comparison: an input transformation is worth what the adaptive figure gains over
    the undefended one.

    Returns a :class:`NaiveVsAdaptive`; its :meth:`~NaiveVsAdaptive.rows` are the table.

    Example::

        from bastion.assess import naive_vs_adaptive
        defended = DefendedTarget(target, [create_defence("jpeg:quality=50")])
        for row in naive_vs_adaptive(defended, data, Threat(epsilons=(0.1,))).rows():
            print(row["naive"], row["adaptive"], row["undefended"])
    """
    if pgd_steps < 1:
        raise ConfigError(f"pgd_steps must be at least 1, got {pgd_steps}")
    naive = scan(
        naive_target(target),
        data,
        threat,
        samples=samples,
        seed=seed,
        attacks=["pgd"],
        attack_params={"pgd": {"steps": pgd_steps, "eot_samples": 1}},
        progress=progress,
        chain=True,
    )
    common: dict[str, Any] = {
        "preset": preset,
        "samples": samples,
        "seed": seed,
        "attack_params": attack_params,
        "progress": progress,
    }
    adaptive = evaluate(target, data, threat, **common)
    base = None
    if undefended and isinstance(target, DefendedTarget):
        base = evaluate(target.inner, data, threat, **common)
    return NaiveVsAdaptive(naive=naive, adaptive=adaptive, undefended=base)
