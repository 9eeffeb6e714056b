"""The minimal-perturbation attacks: C-W L2, DeepFool and FAB do their job on the demo CNN.

The invariants every attack keeps (epsilon, bounds, dtype, queries, budget, seeds) are checked
for them by ``test_attacks_invariants.py``; this file checks what is theirs: the minimal
search itself (with ``ball_steps=0``, so that no gradient steps inside the ball help), the
contract with epsilon, targeted runs, and how small their perturbations are.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

from bastion import PGD, Threat
from bastion.attacks.evasion import FAB, CarliniWagnerL2, DeepFool
from bastion.attacks.evasion._minimal import project_on_plane
from bastion.core.errors import ConfigError
from bastion.core.targets import TorchTarget
from bastion.core.threat import Norm

from helpers import accuracy


@pytest.fixture
def correct(cnn: TorchTarget, digits: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 50 digits, those the CNN classifies correctly."""
    x, y = digits[0][:50], digits[1][:50]
    keep = cnn.predict(x) == y
    return x[keep], y[keep]


# economical settings, each a factory taking more keyword arguments
CW = partial(CarliniWagnerL2, steps=100, lr=0.1, binary_search_steps=5)
MINIMAL = [
    pytest.param(CW, "l2", id="cw-l2"),
    pytest.param(DeepFool, "l2", id="deepfool-l2"),
    pytest.param(DeepFool, "linf", id="deepfool-linf"),
    pytest.param(partial(FAB, steps=30), "l2", id="fab-l2"),
    pytest.param(partial(FAB, steps=30), "linf", id="fab-linf"),
    pytest.param(partial(FAB, steps=20, targets=3), "l2", id="fab-t-l2"),
]


@pytest.mark.parametrize(("make", "norm"), MINIMAL)
def test_the_minimal_search_alone_lowers_accuracy(
    make: Any, norm: str, cnn: TorchTarget, digits: Any
) -> None:
    attack = make(ball_steps=0)
    x, y = digits[0][:50], digits[1][:50]
    eps = 1.0 if norm == "l2" else 0.15
    result = attack.run(cnn, x, y, eps=eps, norm=norm)
    assert accuracy(cnn, x, y) > 0.9
    assert float((result.predictions == y).float().mean()) < 0.2
    found = attack.minimal_distances_
    assert found.shape == (50,)
    # what the search found within epsilon is what the attack returned, untouched
    inside = found <= eps
    assert bool(result.success[inside].all())
    assert torch.allclose(result.distances[inside], found[inside], atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        # searches cut short: one DeepFool step; one C-W round, with c too small to succeed
        partial(DeepFool, steps=1, candidates=2),
        partial(CarliniWagnerL2, binary_search_steps=1, steps=10),
    ],
    ids=["deepfool", "cw"],
)
def test_steps_inside_the_ball_take_over_where_the_search_falls_short(
    make: Any, cnn: TorchTarget, correct: Any
) -> None:
    x, y = correct
    eps = 1.0
    attack = make(ball_steps=0)
    projected = attack.run(cnn, x, y, eps=eps, norm="l2")
    found = attack.minimal_distances_
    attack = make(ball_steps=10)
    stepped = attack.run(cnn, x, y, eps=eps, norm="l2")
    assert torch.equal(found, attack.minimal_distances_)
    beyond = found > eps
    assert int(beyond.sum()) > len(x) // 2
    # inputs whose minimal point fits are answered by it, in both runs
    assert torch.equal(projected.x_adv[~beyond], stepped.x_adv[~beyond])
    # beyond epsilon, the steps start where the projection ends: they lose nothing, and win
    assert bool((stepped.success | ~projected.success).all())
    assert int(stepped.success.sum()) >= int(projected.success.sum()) + len(x) // 2
    assert float(stepped.distances.max()) <= eps * (1 + 1e-5)


@pytest.mark.parametrize("make", [CW, partial(FAB, steps=50)], ids=["cw", "fab"])
def test_targeted_runs_reach_the_target_class(make: Any, cnn: TorchTarget, correct: Any) -> None:
    x, y = correct
    goal = (y + 1) % 10
    attack = make(ball_steps=0)
    result = attack.run(cnn, x, goal, Threat(norm="l2", epsilons=(3.0,), targeted=True))
    assert float((result.predictions == goal).float().mean()) > 0.9
    assert bool((result.success == (result.predictions == goal)).all())
    assert float(attack.minimal_distances_.median()) < 1.5


def test_deepfool_refuses_a_targeted_threat(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:8], digits[1][:8]
    threat = Threat(norm="l2", epsilons=(1.0,), targeted=True)
    with pytest.raises(ConfigError, match="untargeted only"):
        DeepFool().run(cnn, x, (y + 1) % 10, threat)
    assert cnn.queries == 0


@pytest.mark.parametrize(
    ("make", "rtol"),
    [(DeepFool, 1e-3), (CW, 0.05), (partial(FAB, steps=30), 0.02)],
    ids=["deepfool", "cw", "fab"],
)
def test_sizes_follow_the_bounds(make: Any, rtol: float, cnn: TorchTarget, correct: Any) -> None:
    """The same model seen through inputs in [-1, 3]: every size is four times larger."""
    x, y = correct
    attack = make(ball_steps=0)
    shifted = TorchTarget(
        cnn.model,
        num_classes=10,
        bounds=(-1.0, 3.0),
        input_shape=(1, 8, 8),
        preprocess=lambda t: (t + 1) / 4,
    )
    attack.run(cnn, x, y, eps=3.0, norm="l2")
    unit = attack.minimal_distances_.clone()
    attack.run(shifted, x * 4 - 1, y, eps=12.0, norm="l2")
    wide = attack.minimal_distances_
    assert bool(torch.isfinite(unit).all())
    assert float(wide.median()) == pytest.approx(4 * float(unit.median()), rel=rtol)


def _pgd_smallest_eps(
    target: TorchTarget, x: torch.Tensor, y: torch.Tensor, top: float, grid: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input, the size of PGD-L2's successful point at the smallest epsilon of the sweep
    ``grid, 2 * grid, ..., top`` that fools it (each epsilon attacks the inputs still standing):
    within one grid step above the smallest perturbation PGD can find."""
    fooled = torch.zeros(len(x), dtype=torch.bool)
    sizes = torch.full((len(x),), math.inf)
    for i in range(1, round(top / grid) + 1):
        todo = (~fooled).nonzero().squeeze(1)
        if len(todo) == 0:
            break
        result = PGD(steps=20).run(target, x[todo], y[todo], eps=i * grid, norm="l2")
        fooled[todo[result.success]] = True
        sizes[todo[result.success]] = result.distances[result.success]
    return fooled, sizes


def test_minimal_sizes_against_pgd(cnn: TorchTarget, correct: Any) -> None:
    """C-W and DeepFool find perturbations no larger than PGD-L2 at its smallest fooling
    epsilon (and far smaller than PGD's at a fixed generous epsilon, where it does not
    minimize); FAB's are within 10% of the better of the two. Medians over the inputs that
    every attack fooled."""
    x, y = correct
    eps = 3.0
    runs = {
        "cw": CW(initial_const=0.1),
        "deepfool": DeepFool(),
        "fab": FAB(),
    }
    fooled, sizes = {}, {}
    for name, attack in runs.items():
        result = attack.run(cnn, x, y, eps=eps, norm="l2")
        fooled[name], sizes[name] = result.success, result.distances
    fixed = PGD(steps=20).run(cnn, x, y, eps=eps, norm="l2")
    fooled["pgd-fixed"], sizes["pgd-fixed"] = fixed.success, fixed.distances
    fooled["pgd-sweep"], sizes["pgd-sweep"] = _pgd_smallest_eps(cnn, x, y, 1.2, 0.02)
    matched = torch.stack(list(fooled.values())).all(dim=0)
    assert int(matched.sum()) >= 0.9 * len(x)
    median = {name: float(s[matched].median()) for name, s in sizes.items()}
    for name in ("cw", "deepfool"):
        assert median[name] <= median["pgd-sweep"], median
        assert median[name] < 0.5 * median["pgd-fixed"], median
    assert median["fab"] <= 1.1 * min(median["cw"], median["deepfool"]), median


@pytest.mark.parametrize("norm", [Norm.L2, Norm.LINF])
def test_projection_on_the_hyperplane_within_the_box_is_the_smallest(norm: Norm) -> None:
    """Against a general solver on small random problems: feasible, and no step is smaller."""
    from scipy.optimize import linprog, minimize

    rng = np.random.default_rng(0)
    lo, hi = -1.0, 2.0
    for _ in range(20):
        dim = 6
        z = rng.uniform(lo, hi, dim)
        w = rng.normal(size=dim)
        w[rng.integers(dim)] = 0.0
        # <w, d> over the box ranges from least to most; pick a c inside
        least, most = np.where(w > 0, lo - z, hi - z) @ w, np.where(w > 0, hi - z, lo - z) @ w
        c = 0.9 * rng.uniform(least, most)
        d = project_on_plane(
            torch.tensor(z[None]),
            torch.tensor(w[None]),
            torch.tensor([c], dtype=torch.float64),
            lo,
            hi,
            norm,
        )[0].numpy()
        assert d @ w == pytest.approx(c, abs=1e-9)
        assert np.all(z + d >= lo - 1e-12)
        assert np.all(z + d <= hi + 1e-12)
        box = [(lo - zi, hi - zi) for zi in z]
        if norm is Norm.L2:
            ref = minimize(
                lambda v: v @ v,
                np.zeros(dim),
                jac=lambda v: 2 * v,
                bounds=box,
                constraints=[{"type": "eq", "fun": lambda v, w=w, c=c: v @ w - c}],
                method="SLSQP",
                options={"ftol": 1e-12, "maxiter": 1000},
            )
            assert ref.x @ w == pytest.approx(c, abs=1e-6)
            assert np.linalg.norm(d) <= np.linalg.norm(ref.x) + 1e-6
        else:
            # variables (d, t): minimize t with -t <= d_i <= t, <w, d> = c, z + d in the box
            eye = np.eye(dim)
            ones = np.ones((dim, 1))
            ref = linprog(
                np.r_[np.zeros(dim), 1.0],
                A_ub=np.block([[eye, -ones], [-eye, -ones]]),
                b_ub=np.zeros(2 * dim),
                A_eq=np.r_[w, 0.0][None],
                b_eq=[c],
                bounds=[*box, (0, None)],
            )
            assert ref.success
            assert np.abs(d).max() <= ref.fun + 1e-9


def test_an_unreachable_hyperplane_gives_the_far_corner() -> None:
    z = torch.tensor([[0.5, 0.5]])
    w = torch.tensor([[1.0, -2.0]])
    for norm in (Norm.L2, Norm.LINF):
        d = project_on_plane(z, w, torch.tensor([10.0]), 0.0, 1.0, norm)
        assert torch.allclose(d, torch.tensor([[0.5, -0.5]]))


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (CarliniWagnerL2(steps=0), "steps"),
        (CarliniWagnerL2(binary_search_steps=0), "binary_search_steps"),
        (CarliniWagnerL2(initial_const=0.0), "initial_const"),
        (CarliniWagnerL2(lr=-1.0), "lr"),
        (CarliniWagnerL2(confidence=-1.0), "confidence"),
        (CarliniWagnerL2(ball_steps=-1), "ball_steps"),
        (DeepFool(steps=0), "steps"),
        (DeepFool(candidates=1), "candidates"),
        (DeepFool(overshoot=-0.1), "overshoot"),
        (FAB(restarts=0), "restarts"),
        (FAB(targets=-1), "targets"),
        (FAB(alpha_max=1.5), "alpha_max"),
        (FAB(eta=0.5), "eta"),
        (FAB(beta=1.0), "beta"),
    ],
)
def test_bad_parameters_are_refused(
    attack: Any, message: str, cnn: TorchTarget, digits: Any
) -> None:
    with pytest.raises(ConfigError, match=message):
        attack.run(cnn, digits[0][:4], digits[1][:4], eps=1.0, norm="l2")
    assert cnn.queries == 0
