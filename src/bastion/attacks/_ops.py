"""Tensor operations shared by attacks: norms, projections, random starts."""

from __future__ import annotations

import torch

from bastion.core.threat import Norm

__all__ = ["clip_to_bounds", "distances", "project", "random_in_ball"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view((-1,) + (1,) * (like.ndim - 1))


def distances(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The size of each sample's perturbation under ``norm``, shape (N,)."""
    flat = _flat(delta)
    if norm is Norm.LINF:
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm is Norm.L2:
        size: torch.Tensor = torch.linalg.vector_norm(flat, ord=2, dim=1)
        return size
    if norm is Norm.L1:
        return flat.abs().sum(dim=1)
    return (flat != 0).sum(dim=1).to(delta.dtype)


def project(delta: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """The nearest point to ``delta`` (per sample) within the ``norm`` ball of radius ``eps``."""
    if norm is Norm.LINF:
        return delta.clamp(-eps, eps)
    if norm is Norm.L2:
        size = _flat(delta).norm(p=2, dim=1).clamp_min(1e-12)
        factor = (eps / size).clamp(max=1.0)
        return delta * _per_sample(factor, delta)
    if norm is Norm.L1:
        return _project_l1(delta, eps)
    k = int(eps)
    flat = _flat(delta)
    if k >= flat.shape[1]:
        return delta
    keep = flat.abs().topk(k, dim=1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, keep, True)
    return (flat * mask).view_as(delta)


def _project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection onto the L1 ball (Duchi et al. 2008): soft-threshold every
    coordinate by the one level that brings the L1 norm down to ``eps``."""
    flat = _flat(delta)
    size = flat.abs().sum(dim=1)
    outside = size > eps
    if not bool(outside.any()):
        return delta
    v = flat[outside].abs()
    mu = v.sort(dim=1, descending=True).values
    cumsum = mu.cumsum(dim=1)
    ranks = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    # the largest rank whose entry stays above the running threshold
    fits = mu * ranks > cumsum - eps
    rho = fits.to(torch.int64).cumsum(dim=1).argmax(dim=1, keepdim=True)
    theta = (cumsum.gather(1, rho) - eps) / (rho + 1).to(v.dtype)
    shrunk = (v - theta).clamp_min(0) * flat[outside].sign()
    out = flat.clone()
    out[outside] = shrunk
    return out.view_as(delta)


def clip_to_bounds(x_adv: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return x_adv.clamp(bounds[0], bounds[1])


def random_in_ball(
    like: torch.Tensor, norm: Norm, eps: float, generator: torch.Generator
) -> torch.Tensor:
    """A random perturbation inside the ball, drawn on the CPU so seeds mean the same anywhere."""
    shape, dtype = like.shape, like.dtype
    if norm is Norm.LINF:
        noise = (torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1) * eps
    elif norm is Norm.L2:
        direction = torch.randn(shape, generator=generator, dtype=torch.float32)
        direction = direction / _flat(direction).norm(dim=1).clamp_min(1e-12).view(
            (-1,) + (1,) * (len(shape) - 1)
        )
        dim = max(1, _flat(like).shape[1])
        radius = torch.rand(shape[0], generator=generator) ** (1.0 / dim) * eps
        noise = direction * radius.view((-1,) + (1,) * (len(shape) - 1))
    elif norm is Norm.L1:
        # a Laplace direction scaled to a radius drawn as for a uniform point of the ball
        exp = -torch.rand(shape, generator=generator, dtype=torch.float32).clamp_min(1e-12).log()
        sign = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8) * 2 - 1
        direction = exp * sign.to(torch.float32)
        direction = direction / _flat(direction).abs().sum(dim=1).clamp_min(1e-12).view(
            (-1,) + (1,) * (len(shape) - 1)
        )
        dim = max(1, _flat(like).shape[1])
        radius = torch.rand(shape[0], generator=generator) ** (1.0 / dim) * eps
        noise = direction * radius.view((-1,) + (1,) * (len(shape) - 1))
    else:
        raise ValueError("no random start for L0")
    return noise.to(device=like.device, dtype=dtype)
