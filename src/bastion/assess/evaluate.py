"""The robustness evaluation: a fixed ensemble per preset, made adaptive by its own checks.

:func:`evaluate` runs the attacks of a preset (``quick``, ``standard`` or ``thorough``) in
AutoAttack's manner: one chain, each attack only on the inputs the ones before left standing,
the robust accuracy the pointwise worst case. Which attacks run depends on the access the
target gives: gradient attacks with a score-based cross-check for a white-box model, what the
access allows otherwise.

Before attacking, it probes the model, and answers what it finds instead of only warning:

- randomness in the forward pass: the gradient attacks average their gradients over several
  passes (expectation over transformation);
- zero, NaN or vanishing gradients (masked gradients): the score-based black-box attacks join
  the chain even when the user asked for white-box attacks only, so a model that hides its
  gradients is measured by attacks that do not need them;
- a surrogate model, when one is given, adds a transfer attack.

Bastion's own preprocessing defences are always attacked through their straight-through
(BPDA) gradients. After the run, a black-box attack that fools inputs the gradient attacks
left standing is reported: the gradients were not telling the truth, and the figure counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.assess.scan import ProgressFn, ScanResult, evasion_findings, scan
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind, Threat
from bastion.data import Dataset

__all__ = ["PRESETS", "Preset", "evaluate", "preset_attacks"]

#: passes per gradient under expectation over transformation
EOT_SAMPLES = 8


@dataclass(frozen=True)
class Preset:
    """An evaluation preset: the chain of attacks for each kind of access, in order."""

    name: str
    description: str
    white_box: tuple[tuple[str, dict[str, Any]], ...]
    scores: tuple[tuple[str, dict[str, Any]], ...]
    labels: tuple[tuple[str, dict[str, Any]], ...]

    def chain(self, access: Access) -> tuple[tuple[str, dict[str, Any]], ...]:
        if access is Access.WHITE_BOX:
            return self.white_box
        return self.scores if access is Access.SCORES else self.labels


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "quick",
            "a first answer in seconds: short APGD-CE and APGD-T runs (gradient access), or a "
            "short Square / HopSkipJump run; no black-box check of the gradients",
            white_box=(
                ("apgd", {"steps": 20}),
                ("apgd-t", {"steps": 20, "target_classes": 2}),
            ),
            scores=(("square", {"max_queries": 1000, "halving": True}),),
            labels=(("hopskipjump", {"max_queries": 500}),),
        ),
        Preset(
            "standard",
            "the default: short APGD-CE and APGD-T runs, then Square with successive halving "
            "as a black-box check on what they left standing",
            white_box=(
                ("apgd", {"steps": 20}),
                ("apgd-t", {"steps": 20, "target_classes": 2}),
                ("square", {"max_queries": 5000, "halving": True}),
            ),
            scores=(("square", {"max_queries": 5000}),),
            labels=(("hopskipjump", {"max_queries": 2000}),),
        ),
        Preset(
            "thorough",
            "for a figure to publish: APGD-CE, APGD-T on nine wrong classes, and a long Square "
            "run with successive halving on what they left standing",
            white_box=(
                ("apgd", {"steps": 100}),
                ("apgd-t", {"steps": 100, "target_classes": 9}),
                ("square", {"max_queries": 10000, "halving": True}),
            ),
            scores=(("square", {"max_queries": 10000}), ("nes", {"max_queries": 2000})),
            labels=(("hopskipjump", {"max_queries": 5000}),),
        ),
    )
}


def preset_attacks(preset: str, target: Target, threat: Threat) -> list[tuple[str, dict[str, Any]]]:
    """The chain a preset runs against ``target`` under ``threat``: its attacks for the
    access the target gives and the adversary has, less those that do not support the
    threat's norm."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    access = target.access if target.access.rank <= threat.knowledge.rank else threat.knowledge
    chain: list[tuple[str, dict[str, Any]]] = []
    for name, params in PRESETS[preset].chain(access):
        entry = ATTACKS.get(name)
        if threat.norm in entry.norms:
            chain.append((name, dict(params)))
    return chain


@dataclass
class _Probe:
    random: bool = False
    masked: str | None = None


def _probe(target: Target, x: torch.Tensor, y: torch.Tensor) -> _Probe:
    """Look for randomness in the forward pass and for gradients that hide the way."""
    found = _Probe()
    if target.output_kind is OutputKind.LABELS or len(x) == 0:
        return found
    with target.inference_mode(), torch.no_grad():
        first, second = target(x), target(x)
    found.random = not torch.allclose(first, second, atol=1e-5, rtol=1e-4)
    if target.access is not Access.WHITE_BOX:
        return found
    with target.inference_mode():
        point = x.detach().clone().requires_grad_(True)
        scores = target(point)
        if target.output_kind is OutputKind.PROBABILITIES:
            scores = scores.clamp_min(1e-30).log()
        # the logit margin, which unlike cross-entropy does not saturate on confident inputs
        true = scores.gather(1, y.view(-1, 1)).squeeze(1)
        other = scores.scatter(1, y.view(-1, 1), float("-inf")).amax(dim=1)
        loss = (true - other).sum()
        try:
            (grad,) = torch.autograd.grad(loss, point, allow_unused=True)
        except RuntimeError:
            grad = None
    if grad is None:
        found.masked = "the inputs do not reach the loss through a differentiable path"
        return found
    flat = grad.flatten(1)
    if not bool(torch.isfinite(flat).all()):
        found.masked = "the gradients contain NaN or infinite values"
        return found
    size = flat.abs().amax(dim=1)
    span = target.bounds[1] - target.bounds[0]
    # a loss that moves by less than 1e-8 across the whole input range carries no direction
    vanishing = size * span < 1e-8
    if int(vanishing.sum()) * 4 >= len(x):
        found.masked = f"{int(vanishing.sum())} of {len(x)} inputs have zero or vanishing gradients"
    return found


def evaluate(
    target: Target,
    data: Dataset,
    threat: Threat,
    *,
    preset: str = "standard",
    samples: int = 500,
    seed: int = 0,
    attacks: Sequence[str] | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    surrogate: Any = None,
    adaptive: bool = True,
    progress: ProgressFn | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    indices: Sequence[int] | np.ndarray | None = None,
) -> ScanResult:
    """The robust accuracy of ``target`` under ``threat``, by a preset's ensemble.

    ``attacks`` replaces the preset's chain (in the order given; an attack the preset also
    runs keeps the preset's settings); ``attack_params`` overrides parameters per attack.
    With ``adaptive`` (the default), the model is probed first and the evaluation answers
    what it finds (see the module's documentation); what it did is listed in
    ``result.adaptations`` and in the report's setting. A ``surrogate`` (a white-box target,
    or a target spec) adds a transfer attack crafted on it to the end of the chain.
    ``indices`` names the test inputs to attack instead of a sample (see
    :func:`~bastion.assess.scan.scan`); the probe reads the first test inputs either way, so
    every shard of an evaluation adapts alike.

    Returns a :class:`~bastion.assess.scan.ScanResult`: robust accuracy per epsilon with 95%
    intervals, what each attack fooled with queries and time spent, findings and warnings.
    """
    threat.check_bounds(target.bounds)
    if attacks:
        # the attacks given, in order, with the preset's settings for those it has
        known = {name: p for name, p in preset_attacks(preset, target, threat)}
        for name in attacks:
            ATTACKS.get(name)
        chain: list[tuple[str, dict[str, Any]]] = [
            (name, dict(known.get(name, {}))) for name in attacks
        ]
    else:
        chain = preset_attacks(preset, target, threat)
    if surrogate is not None and "transfer" not in [name for name, _ in chain]:
        # adversarial inputs crafted on the surrogate: a check that needs no gradient here
        chain.append(("transfer", {"surrogate": surrogate}))
    params: dict[str, dict[str, Any]] = {name: dict(p) for name, p in chain}
    for name, extra in (attack_params or {}).items():
        params.setdefault(name, {}).update(extra)
    names = [name for name, _ in chain]

    adaptations: list[str] = []
    eot_applied = unchecked = False
    if adaptive:
        n = min(16, len(data.x_test))
        x = torch.from_numpy(data.x_test[:n]).to(target.device)
        y = torch.from_numpy(data.y_test[:n]).to(target.device)
        target.check_inputs(x, y)
        found = _probe(target, x, y)
        if found.random:
            eot = [n_ for n_ in names if "eot_samples" in ATTACKS.get(n_).parameters()]
            for name in eot:
                if params[name].get("eot_samples", 1) < EOT_SAMPLES:
                    params[name]["eot_samples"] = EOT_SAMPLES
            if eot:
                eot_applied = True
                adaptations.append(
                    "the model answers the same input differently (randomness in the forward "
                    f"pass): {', '.join(eot)} averaged their gradients over {EOT_SAMPLES} passes "
                    "(expectation over transformation)"
                )
        if found.masked is not None:
            present = [n_ for n_ in names if ATTACKS.get(n_).access is not Access.WHITE_BOX]
            added = _black_box_answer(preset, target, threat, names)
            for name, p in added:
                names.append(name)
                params.setdefault(name, p)
            if added:
                what = f"{', '.join(n_ for n_, _ in added)} joined the chain"
            elif present:
                what = f"the chain's black-box attacks ({', '.join(present)}) check them"
            else:
                unchecked = True
                what = "no black-box attack could join the chain (none fits this norm and access)"
            adaptations.append(f"masked gradients ({found.masked}): {what}")
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(
            f"settings for {', '.join(unknown)}, which this evaluation does not run "
            f"(it runs {', '.join(names)})"
        )
    result = scan(
        target,
        data,
        threat,
        samples=samples,
        seed=seed,
        attacks=names,
        attack_params={k: v for k, v in params.items() if v},
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
        chain=True,
        indices=indices,
    )
    result.preset = None if attacks else preset
    result.adaptations = adaptations
    result.warnings += _cross_check(result)
    if unchecked:
        result.warnings.append(
            "the gradients are masked and no black-box attack could check them: "
            "the robust accuracy is not a lower bound of the attacks' success"
        )
    if eot_applied:
        # answered with EOT: the warning has become an adaptation, and no longer marks the
        # findings unreliable
        result.warnings = [w for w in result.warnings if "randomness in the forward pass" not in w]
    result.findings = evasion_findings(result, [ATTACKS.get(n_) for n_ in result.attacks], data)
    return result


def _black_box_answer(
    preset: str, target: Target, threat: Threat, names: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The score-based attacks of the preset (or the standard one) that the chain lacks."""
    if target.output_kind is OutputKind.LABELS:
        return []
    pool = PRESETS.get(preset, PRESETS["standard"]).scores or PRESETS["standard"].scores
    out = []
    for name, p in pool:
        entry = ATTACKS.get(name)
        if name not in names and threat.norm in entry.norms:
            out.append((name, dict(p)))
    return out


def _cross_check(result: ScanResult) -> list[str]:
    """A black-box attack that fools inputs every gradient attack before it left standing
    means the gradients misled those attacks."""
    out = []
    for point in result.sweep:
        gradient_left = None
        for s in point.attacks:
            entry = ATTACKS.get(s.attack) if s.attack in ATTACKS else None
            if entry is None:
                continue
            if entry.access is Access.WHITE_BOX:
                gradient_left = s.attacked - s.fooled
            elif gradient_left and s.fooled and s.fooled / point.total > 0.02:
                out.append(
                    f"at eps={point.epsilon:g} {s.attack} (black-box) fooled {s.fooled} inputs "
                    "that the gradient attacks left standing: the gradients may be masked; "
                    "the figure counts these inputs as fooled"
                )
    return out
