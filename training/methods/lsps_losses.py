"""The LSPS objectives (Abdi et al., *Learning from Simulation and Partial Supervision*, BMVC 2018),
one function per equation. Reductions are means over elements (as in the authors' UNIT-based code),
so the λ weights balance means; NLL terms are ℓ1 (the code's ``|x̂ − x|``), ``‖·‖₂`` terms mean
squared errors. Every function takes already-computed network outputs; the phases in
:mod:`training.methods.lsps` wire the networks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I); without ``logvar`` σ = 1 (the depth encoders' q = N(μ, I), §3.2).

    mu, logvar: (B, …) the same shape; noise: ε (drawn when None). Example: μ = 1, log σ² = log 4,
    ε = 0.5 → z = 1 + 2·0.5 = 2. ε is drawn from ``generator`` (a phase's own, checkpointed) when given.
    """
    if noise is None:
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    eps = noise
    return mu + (eps if logvar is None else torch.exp(0.5 * logvar) * eps)


def kl_gaussian(mu: torch.Tensor, logvar: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per element, averaged: ``mean(−½(1 + log σ² − μ² − σ²))``.

    Eqs. 1 (q_y with learned σ²), 3 and 5 (unit variance: ``mean(½ μ²)``). Example: μ = 1, σ² = 1
    → 0.5; μ = 0, σ² = e → ½(e − 2).
    """
    if logvar is None:
        return 0.5 * mu.pow(2).mean()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


def nll_l1(reconstruction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """−log p(x|z) as ℓ1 (Laplace likelihood up to constants), mean over elements; ``weights`` (B,) keeps
    only weighted rows (the labelled fraction), averaged over their count."""
    per = (reconstruction - target).abs().flatten(1).mean(1)
    return masked_mean(per, weights)


def sq_l2(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """‖a − b‖₂ terms of Eqs. 6-7 as a mean squared error per row, averaged over (weighted) rows."""
    return masked_mean((a - b).pow(2).flatten(1).mean(1), weights)


def masked_mean(per_row: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_row`` (B,), or over the rows with ``weights`` (B,) true (0 when there are none)."""
    if weights is None:
        return per_row.mean()
    w = weights.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp(min=1.0)


def pose_vae_loss(y: torch.Tensor, y_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  lambda0: float, lambda1: float) -> tuple[torch.Tensor, dict]:
    """Eq. 1: L_VAE_y = λ0 KL(q_y(z_y|y) ‖ N(0, I)) + λ1 NLL(G_y(z_y), y); y, ŷ (B, 3J), μ, log σ² (B, 20)."""
    kl, nll = kl_gaussian(mu, logvar), nll_l1(y_hat, y)
    return lambda0 * kl + lambda1 * nll, {"kl_y": kl.item(), "nll_y": nll.item()}


def vae_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, lambda2: float, lambda3: float) -> torch.Tensor:
    """Eq. 3 (and Eq. 5 with the cycle's inputs): λ2 KL(N(μ, I) ‖ N(0, I)) + λ3 NLL(x̂, x); x, x̂ (B,1,S,S)."""
    return lambda2 * kl_gaussian(mu) + lambda3 * nll_l1(x_hat, x)


def gan_generator_loss(fake_logits: torch.Tensor, lambda4: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Generator side of Eqs. 4 and 6: λ4 · −log D(G(z)) (the non-saturating form of log(1 − D(G(z))))."""
    per = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits), reduction="none")
    return lambda4 * masked_mean(per, weights)


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: list[torch.Tensor], lambda4: float) -> torch.Tensor:
    """Discriminator side of Eqs. 4 and 6: λ4 (−log D(x) − mean_k log(1 − D(fake_k))); logits (B,)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = sum(F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)) for f in fake_logits) / len(fake_logits)
    return lambda4 * (real + fake)


def mapping_loss(m_zy: torch.Tensor, z_x: torch.Tensor, x: torch.Tensor, x_from_m: torch.Tensor,
                 fake_logits: torch.Tensor, lambda4: float, lambda5: float, lambda6: float,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: L_MAP = λ5 ‖M(z_y) − z_x‖₂ + λ6 NLL(G(M(z_y)), x) + λ4 GAN(G(M(z_y))).

    MAP_s with synthetic (x_s, y); MAP_r (§3.3) with the labelled real rows only (``weights`` (B,)).
    m_zy, z_x (B,C,S/4,S/4); x, x_from_m (B,1,S,S); fake_logits (B,).
    """
    return (lambda5 * sq_l2(m_zy, z_x, weights) + lambda6 * nll_l1(x_from_m, x, weights)
            + gan_generator_loss(fake_logits, lambda4, weights))


def posterior_loss(p_x: torch.Tensor, z_y: torch.Tensor, lambda7: float,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7: L_POS = λ7 ‖P(x) − z_y‖₂; POS_s on synthetic, POS_r (§3.3) on the labelled real rows."""
    return lambda7 * sq_l2(p_x, z_y, weights)


def feature_matching_loss(f_ss: torch.Tensor, f_sr: torch.Tensor, f_rs: torch.Tensor, f_rr: torch.Tensor,
                          lambda8: float) -> torch.Tensor:
    """Eq. 9: λ8 ‖D_s,φ(x^{s→s}) − D_r,φ(x^{s→r})‖₁ + λ8 ‖D_s,φ(x^{r→s}) − D_r,φ(x^{r→r})‖₁ (mean ℓ1).

    f_ab: penultimate discriminator activations (B, C, 2, 2) of the image of domain a translated to b.
    """
    return lambda8 * ((f_ss - f_sr).abs().mean() + (f_rs - f_rr).abs().mean())


__all__ = ["reparameterise", "kl_gaussian", "nll_l1", "sq_l2", "masked_mean", "pose_vae_loss", "vae_loss",
           "gan_generator_loss", "gan_discriminator_loss", "mapping_loss", "posterior_loss",
           "feature_matching_loss"]
