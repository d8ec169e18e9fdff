"""Parameter regularisers: the learned prior R(theta; phi) and the fixed baselines (paper Sect. 4.2, Table 2).

All functions take name -> tensor mappings, normally ``dict(model.named_parameters())``;
a prior ``phi`` has one entry of the same shape per parameter (``training.prior.init_phi``).
Every parameter is regularised (convolutions, BatchNorm affine parameters, biases, head),
matching "one weight per parameter element" (method.md §5).

=========================  ==================================  ==========================
function                   value                               paper
=========================  ==================================  ==========================
``weighted_l2_prior``      sum_i phi_i theta_i^2               Eq. (10), R of Eq. (9)
``weighted_l1_prior``      sum_i phi_i |theta_i|               Table 2 "R, l1-weighted"
``l2_penalty``             sigma sum_i theta_i^2               Table 2 "l2" baseline
``l1_penalty``             sigma sum_i |theta_i|               Table 2 "l1" baseline
=========================  ==================================  ==========================

``PRIORS`` maps the prior kind ("l2", "l1") to ``(value, r', r'')`` where the prior is
``sum_i phi_i r(theta_i)``; the efficient meta-gradient (``training.meta``) uses r' and r''.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch


def _check_keys(params: Mapping[str, torch.Tensor], phi: Mapping[str, torch.Tensor]) -> None:
    if params.keys() != phi.keys():
        missing = sorted(set(params) - set(phi))
        extra = sorted(set(phi) - set(params))
        raise KeyError(f"prior does not match the parameters: no phi for {missing[:5]}, "
                       f"phi without parameter {extra[:5]}")
    for name, p in params.items():
        if phi[name].shape != p.shape:
            raise ValueError(f"phi[{name!r}] has shape {tuple(phi[name].shape)}, "
                             f"parameter has {tuple(p.shape)}")


def _total(terms) -> torch.Tensor:
    terms = list(terms)
    if not terms:
        raise ValueError("no parameters to regularise")
    return torch.stack(terms).sum()


def weighted_l2_prior(params: Mapping[str, torch.Tensor], phi: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """R(theta; phi) = sum_i phi_i theta_i^2, Eq. (10) (the regulariser of F, Eq. 9). Scalar."""
    _check_keys(params, phi)
    return _total((phi[n] * p.pow(2)).sum() for n, p in params.items())


def weighted_l1_prior(params: Mapping[str, torch.Tensor], phi: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """sum_i phi_i |theta_i| — the l1-weighted variant of R (paper Table 2). Scalar."""
    _check_keys(params, phi)
    return _total((phi[n] * p.abs()).sum() for n, p in params.items())


def l2_penalty(params: Mapping[str, torch.Tensor], sigma: float) -> torch.Tensor:
    """sigma * sum_i theta_i^2 — plain weight decay baseline (paper Table 2, sigma in {1e-3, 1e-5})."""
    return sigma * _total(p.pow(2).sum() for p in params.values())


def l1_penalty(params: Mapping[str, torch.Tensor], sigma: float) -> torch.Tensor:
    """sigma * sum_i |theta_i| — sparsity baseline (paper Table 2, sigma in {1e-4, 1e-6})."""
    return sigma * _total(p.abs().sum() for p in params.values())


def weighted_penalty(params: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor | float],
                     form: str) -> torch.Tensor:
    """``Σ_i w_i r(θ_i)`` with ``r = θ²`` (form ``"l2"``) or ``|θ|`` (``"l1"``); ``w`` per parameter
    a tensor of its shape (the learned φ) or a float (σ of the baselines). Scalar."""
    value = PRIORS[form][0]
    if all(isinstance(w, float) for w in weights.values()):
        sigmas = set(weights.values())
        if len(sigmas) == 1:  # σ everywhere: the baselines' σ·Σ r(θ)
            return (l2_penalty if form == "l2" else l1_penalty)(params, sigmas.pop())
    full = {n: (w if torch.is_tensor(w) else torch.full_like(params[n], w)) for n, w in weights.items()}
    return value(params, full)


@torch.no_grad()
def decoupled_decay_(params: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor | float], form: str,
                     lr: float) -> None:
    """Apply ``Σ w r(θ)`` as a decay beside the optimiser step, in place (Algorithm 3's form).

    ``"l2"``: ``θ ← θ(1 − 2·lr·w)`` — the inner step ``θ̈ = θ(1 − 2αφ) − α∇L_REG`` of Algorithm 3
    with α = the step's learning rate. ``"l1"``: ``θ ← θ − lr·w·sign(θ)``; where ``w ≥ 0`` this is
    the soft threshold ``sign(θ)·max(|θ| − lr·w, 0)`` (the proximal step of ``w|θ|``), so a weight
    shrinks to 0 and stops instead of oscillating around it.
    """
    if form not in PRIORS:
        raise ValueError(f"unknown regulariser form {form!r}; known: {', '.join(sorted(PRIORS))}")
    for name, theta in params.items():
        w = weights[name]
        if form == "l2":
            theta.mul_(1.0 - 2.0 * lr * w)
            continue
        step = lr * w
        shrunk = theta - step * torch.sign(theta)
        crossed = torch.sign(shrunk) != torch.sign(theta)
        theta.copy_(torch.where(crossed & (torch.as_tensor(step) >= 0), torch.zeros_like(theta), shrunk))


def _d_square(theta: torch.Tensor) -> torch.Tensor:
    return 2 * theta


def _dd_square(theta: torch.Tensor) -> torch.Tensor:
    return torch.full_like(theta, 2.0)


def _d_abs(theta: torch.Tensor) -> torch.Tensor:
    return torch.sign(theta)


def _dd_abs(theta: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(theta)


# kind -> (R(params, phi), r'(theta), r''(theta)) for R = sum_i phi_i r(theta_i)
PRIORS = {
    "l2": (weighted_l2_prior, _d_square, _dd_square),
    "l1": (weighted_l1_prior, _d_abs, _dd_abs),
}
