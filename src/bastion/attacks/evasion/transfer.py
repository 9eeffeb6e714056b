"""Transfer attack: adversarial inputs crafted on a surrogate model, used against the victim."""

from __future__ import annotations

from typing import Any

import torch

from bastion.attacks._ops import clip_to_bounds, project
from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS, register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["TransferAttack"]


@register_attack(
    "transfer",
    family="evasion",
    access=Access.LABELS,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.002", "AML.T0043", "AML.T0015"),
    cost=15,
    defaults={"steps": 20, "tries": 2},
    fast={"surrogate": "digits-mlp", "steps": 10, "tries": 2},
    requires=("surrogate",),
)
class TransferAttack(Attack):
    """Craft adversarial inputs on a surrogate model the adversary owns, and submit them to
    the victim, which only has to answer with labels.

    The surrogate is attacked white-box with a registered gradient attack (PGD by default)
    under the same threat. Each input gets up to ``tries`` crafts, from different random
    starts, alternating the cross-entropy and the margin loss where the attack has one; every
    craft but the last is checked on the victim (one query per input), and the first that fools
    it is kept. A surrogate whose bounds differ from the victim's sees the inputs mapped
    linearly onto its own (epsilon scaled alike), so both read the same picture.

    Paper: Papernot, McDaniel, Goodfellow, "Transferability in Machine Learning: from
    Phenomena to Black-Box Attacks using Adversarial Samples", 2016, arXiv:1605.07277.

    Threat: label-only black-box victim (any access) and a white-box surrogate of the same
    task; Linf or L2; untargeted or targeted.

    Args:
        surrogate: the adversary's own model: a :class:`~bastion.core.targets.base.Target`,
            or a target spec (a demo name such as ``"digits-mlp"``, an ONNX or state-dict
            file), loaded by the target loaders with the victim's classes, bounds and input
            shape, without ``trust``. Required.
        attack: the registered attack run on the surrogate (``"pgd"``).
        steps: its steps, where it has a ``steps`` setting (20).
        tries: crafts per input; all but the last are checked on the victim (2).
        params: any other settings of ``attack`` (``{"restarts": 3}``).

    Returns: an :class:`~bastion.core.results.AttackResult` with ``queries_per_sample``
    (victim queries before the final check).

    Example:
        >>> surrogate, _ = load_demo("digits-mlp")  # doctest: +SKIP
        >>> attack = TransferAttack(surrogate=surrogate)  # doctest: +SKIP
        >>> result = attack.run(victim, x, y, eps=0.2)  # doctest: +SKIP
    """

    # a surrogate given as a spec, once loaded: (spec, target)
    _loaded: tuple[str, Target] | None = None

    def __init__(
        self,
        *,
        surrogate: Target | str | None = None,
        attack: str = "pgd",
        steps: int = 20,
        tries: int = 2,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.surrogate = surrogate
        self.attack = attack
        self.steps = steps
        self.tries = tries
        self.params = params

    def _check_params(self) -> None:
        if self.surrogate is None:
            raise ConfigError(
                "transfer needs a surrogate: a white-box model of the same task "
                "(transfer.surrogate=digits-mlp, or --surrogate SPEC)"
            )
        if not isinstance(self.surrogate, (Target, str)) or self.surrogate == "":
            raise ConfigError(
                f"surrogate must be a target or a target spec, got {self.surrogate!r}"
            )
        self._at_least(steps=1, tries=1)
        entry = ATTACKS.get(self.attack)
        if entry.family != "evasion" or entry.cls is type(self):
            raise ConfigError(f"transfer crafts with an evasion attack, not {self.attack!r}")
        self._settings(0)

    def _settings(self, attempt: int) -> dict[str, Any]:
        entry = ATTACKS.get(self.attack)
        known = entry.parameters()
        settings: dict[str, Any] = {**entry.defaults}
        if "steps" in known:
            settings["steps"] = self.steps
        if "loss" in known and attempt % 2 == 1:
            settings["loss"] = "margin"
        if "early_stop" in known:
            # an input that only just fools the surrogate rarely fools anyone else: every step
            # is taken, pushing it deep into the wrong class
            settings["early_stop"] = False
        settings.update(self.params or {})
        return entry.validate(settings)

    def resolve(self, victim: Target) -> Target:
        """The surrogate as a target (a spec loaded once per attack object), checked against
        the victim: the same classes and input shape."""
        surrogate = self.surrogate
        if isinstance(surrogate, str):
            if self._loaded is None or self._loaded[0] != surrogate:
                from bastion.loaders import TargetSpec, load_target

                spec = TargetSpec(
                    source=surrogate,
                    num_classes=victim.num_classes,
                    bounds=victim.bounds,
                    input_shape=victim.input_shape,
                    device=str(victim.device),
                )
                self._loaded = (surrogate, load_target(spec))
            surrogate = self._loaded[1]
        if not isinstance(surrogate, Target):
            raise ConfigError(f"surrogate must be a target or a target spec, got {surrogate!r}")
        if surrogate.num_classes != victim.num_classes:
            raise ConfigError(
                f"the surrogate {surrogate.name} has {surrogate.num_classes} classes; "
                f"the victim {victim.num_classes}"
            )
        if (
            surrogate.input_shape is not None
            and victim.input_shape is not None
            and surrogate.input_shape != victim.input_shape
        ):
            raise ConfigError(
                f"the surrogate {surrogate.name} takes inputs of shape {surrogate.input_shape}; "
                f"the victim {victim.input_shape}"
            )
        return surrogate

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        surrogate = self.resolve(target)
        lo_v, hi_v = target.bounds
        lo_s, hi_s = surrogate.bounds
        scale = (hi_s - lo_s) / (hi_v - lo_v)
        eps = threat.epsilon
        inner_threat = threat.model_copy(
            update={
                "epsilons": (eps * scale,),
                "knowledge": Access.WHITE_BOX,
                "queries_per_input": None,
            }
        )
        dtype = _input_dtype(surrogate)
        best = x.clone()
        standing = torch.ones(len(x), dtype=torch.bool, device=x.device)
        spent = torch.zeros(len(x), dtype=torch.long)
        for attempt in range(self.tries):
            todo = standing.nonzero().squeeze(1)
            if len(todo) == 0:
                break
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            crafter = ATTACKS.create(self.attack, **self._settings(attempt))
            xs = (lo_s + (x[todo] - lo_v) * scale).to(surrogate.device, dtype)
            xs = xs.clamp(lo_s, hi_s)
            crafted = crafter.run(
                surrogate, xs, y[todo].to(surrogate.device), inner_threat, seed=seed
            )
            back = (lo_v + (crafted.x_adv - lo_s) / scale).to(x.device, x.dtype)
            delta = project(back - x[todo], threat.norm, eps)
            candidate = clip_to_bounds(x[todo] + delta, target.bounds)
            best[todo] = candidate
            if attempt < self.tries - 1:
                fooled = threat.goal.is_success(target.outputs(candidate), y[todo])
                spent[todo.cpu()] += 1
                standing[todo[fooled]] = False
        log.queries_per_sample = spent
        return best


def _input_dtype(target: Target) -> torch.dtype:
    """The floating dtype a white-box surrogate computes in (float32 for a black box)."""
    model = getattr(target, "model", None)
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            if torch.is_floating_point(p):
                return p.dtype
    return torch.float32
