"""Per-sample objectives that gradient attacks increase: cross-entropy, margin and DLR.

Every function returns one value per sample, larger when the sample is closer to the
threat's goal, so the same ascent loop serves untargeted and targeted threats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.core.threat import Threat

__all__ = ["LOSSES", "objective"]

#: the losses a gradient attack accepts, by name
LOSSES = ("ce", "margin", "dlr", "dlr-targeted")


def _other_best(scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The largest score among the classes other than ``label``."""
    masked = scores.scatter(1, label.view(-1, 1), float("-inf"))
    return masked.amax(dim=1)


def _dlr(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Croce & Hein's difference of logits ratio, untargeted: the margin of the true class
    over the best other one, divided by the spread between the first and third largest
    scores, so the loss ignores how the logits are scaled."""
    ordered = scores.sort(dim=1, descending=True).values
    true = scores.gather(1, y.view(-1, 1)).squeeze(1)
    spread = ordered[:, 0] - ordered[:, 2] + 1e-12
    return -(true - _other_best(scores, y)) / spread


def _dlr_targeted(scores: torch.Tensor, y: torch.Tensor, towards: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: the true class's score over the target class's, divided by the spread
    between the largest score and the mean of the third and fourth."""
    ordered = scores.sort(dim=1, descending=True).values
    true = scores.gather(1, y.view(-1, 1)).squeeze(1)
    goal = scores.gather(1, towards.view(-1, 1)).squeeze(1)
    spread = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2 + 1e-12
    return -(true - goal) / spread


def objective(
    scores: torch.Tensor,
    y: torch.Tensor,
    threat: Threat,
    loss: str,
    towards: torch.Tensor | None = None,
) -> torch.Tensor:
    """The value an attack increases for each sample.

    ``y`` holds the true labels, or the target labels under a targeted threat. ``towards``
    is the class a targeted loss pulls an untargeted attack to (APGD-T's target classes).
    DLR needs at least three classes and targeted DLR four; with fewer, the margin stands in.
    """
    classes = scores.shape[1]
    if loss == "ce":
        value = F.cross_entropy(scores, y, reduction="none")
        return -value if threat.targeted else value
    if loss == "dlr" and classes >= 3:
        if threat.targeted:
            # pull the target class above the best other one, scale-free (the targeted
            # DLR's spread, which the target class cannot shrink by itself)
            ordered = scores.sort(dim=1, descending=True).values
            goal = scores.gather(1, y.view(-1, 1)).squeeze(1)
            if classes >= 4:
                spread = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2 + 1e-12
            else:
                spread = ordered[:, 0] - ordered[:, -1] + 1e-12
            return -(_other_best(scores, y) - goal) / spread
        return _dlr(scores, y)
    if loss == "dlr-targeted" and classes >= 4:
        if threat.targeted or towards is None:
            return objective(scores, y, threat, "dlr")
        return _dlr_targeted(scores, y, towards)
    if loss == "dlr-targeted" and towards is not None and not threat.targeted:
        # too few classes for the spread: the plain margin towards the target class
        true = scores.gather(1, y.view(-1, 1)).squeeze(1)
        return scores.gather(1, towards.view(-1, 1)).squeeze(1) - true
    return -threat.goal.margin(scores, y)
