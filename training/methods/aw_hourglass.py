"""Adaptive Wasserstein Hourglass (weakly supervised synthetic → real adaptation, 2.5D output).

The network is :class:`models.hourglass.Hourglass25D` (family ``hourglass``: ResNet stem..layer3,
decoder with skips, K latent 2D heatmaps + K depth maps, depth regulariser submodule); the critic is
:class:`models.critic.Critic`. Two phases, run by the toolkit's trainer:

===========  ===============================  ==========================================================
phase        data                             the network minimises (Eq. 11; the critic Eq. 4)
===========  ===============================  ==========================================================
aw_pretrain  data.train (synthetic, full      λ_res·Lˢ2.5D (Eq. 8) + λ_reg·Lˢreg (Eq. 10); no critic
             labels)                          ("pretraining without discriminator is crucial")
aw_adapt     data.train + data.adapt (real:   λ_res(Lˢ2.5D + Lᵗ2D) + λ_reg(Lˢreg + Lᵗreg) + λ_wd·L_wd;
             RGB, 2D keypoints, depth only;   ``aw_hourglass.critic``: ``none`` (joint training, no
             joints3d/target/root/scale are   critic; the paper's wo/AWH), ``wasserstein`` (critic on z,
             removed by training.adapt)       α ≡ 1; w/WH) or ``adaptive`` (critic on α ⊙ z, Eq. 5–6;
                                              w/AWH). After each network step the critic takes
                                              ``critic_steps`` Adam steps maximising L_wd − λ_gp·GP
===========  ===============================  ==========================================================

Defaults (the paper gives none; ``aw_hourglass.*`` and ``configs/aw_hourglass*.yaml``): λ_gp = 10,
5 critic steps, critic Adam 1e-4 (β = 0.5, 0.9), λ_wd = 0.01, λ_res = 1, λ_reg = 0.1 (range 0.1–1),
λ_α = 1 with the 2D term in heatmap pixels, network Adam 1e-4, batch 16 synthetic + 16 real.

Choices the paper leaves open:

- **α is detached and clamped to [0, 1].** Not detached, the cheapest way for the encoder to lower
  L_wd would be to make the two domains' channels orthogonal (α → 0), hiding them from the critic
  rather than aligning them; α is a weight, not a path. z is post-ReLU, so the cosine is already in
  [0, 1]; the clamp only guards rounding.
- **Pairs.** The i-th synthetic and i-th real sample of the half-and-half batch form a pair (Eq. 5 is
  per pair); both members are weighted by the pair's α.
- **Critic steps** reuse the batch's detached features (one batch per trainer step); interpolates x̂
  are drawn per sample with t ~ U[0, 1] (Eq. 4).
- **Losses** are means (Eq. 8's sum over K divided by K and averaged over the batch), which only
  rescales λ against Adam.
- **Depth target** D = (d_max − d)/d_range on the hand, 0 on the background (Eq. 9), from
  ``depth_input`` (hand pixels < 1.0 = ``DEPTH_BACKGROUND``), area-averaged to the heatmap size; the
  regulariser reads the 2D ground truth (heatmap pixels scaled to [−1, 1]) and the predicted Zⁿ.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from models.critic import Critic
from models.hourglass import image_to_heatmap
from training.checkpoint import unwrap
from training.phases import Phase


# --------------------------------------------------------------------------- losses (functions of tensors)


def loss_2d(uv: torch.Tensor, uv_gt: torch.Tensor) -> torch.Tensor:
    """The 2D term of Eq. 8, ‖P2D − P2D_gt‖₁, mean over batch, joints and coordinates (heatmap pixels)."""
    return (uv - uv_gt).abs().mean()


def loss_25d(uv: torch.Tensor, zn: torch.Tensor, uv_gt: torch.Tensor, zn_gt: torch.Tensor,
             lambda_alpha: float) -> torch.Tensor:
    """Eq. 8: L2.5D = ‖P2D − P2D_gt‖₁ + λ_α·‖Zⁿ − Zⁿ_gt‖₁ (means; Zⁿ = (Z − Z_root)/s, Eq. 7)."""
    return loss_2d(uv, uv_gt) + lambda_alpha * (zn - zn_gt).abs().mean()


def depth_target(depth_input: torch.Tensor, size: int, background: float = 1.0) -> torch.Tensor:
    """Eq. 9: D = (d_max − d)/d_range on the hand, 0 on the background, area-averaged to ``size``².

    ``depth_input`` (B, 1, H, W) is the toolkit's normalised depth; its background is ``background``.
    """
    hand = depth_input < background
    big, small = torch.finfo(depth_input.dtype).max, torch.finfo(depth_input.dtype).min
    d_max = torch.where(hand, depth_input, torch.full_like(depth_input, small)).amax(dim=(1, 2, 3), keepdim=True)
    d_min = torch.where(hand, depth_input, torch.full_like(depth_input, big)).amin(dim=(1, 2, 3), keepdim=True)
    d_range = (d_max - d_min).clamp(min=1e-6)
    target = torch.where(hand, (d_max - depth_input) / d_range, torch.zeros_like(depth_input))
    return F.adaptive_avg_pool2d(target, size)


def regularizer_loss(depth_pred: torch.Tensor, depth_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 10: L_reg = ‖Dₙ − D‖₁ (mean over pixels and batch)."""
    return (depth_pred - depth_gt).abs().mean()


def feature_similarity(zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Eq. 5: αᵢ = Σ_HW ẑˢᵢ ẑᵗᵢ for each pair and channel, ẑ = z/‖z‖₂ over H×W: (B, C, h, w)² → (B, C).

    Detached and clamped to [0, 1] (see the module docstring).
    """
    zs, zt = zs.detach().float().flatten(2), zt.detach().float().flatten(2)
    alpha = (F.normalize(zs, dim=-1, eps=1e-8) * F.normalize(zt, dim=-1, eps=1e-8)).sum(dim=-1)
    return alpha.clamp(0.0, 1.0)


def wasserstein_estimate(critic, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Eq. 3 / 6: L_wd = E_s f_d(α ⊙ zˢ) − E_t f_d(α ⊙ zᵗ) (``fs``, ``ft`` already weighted)."""
    return critic(fs).mean() - critic(ft).mean()


def gradient_penalty(critic, fs: torch.Tensor, ft: torch.Tensor, t: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 4's penalty E(‖∇f(x̂)‖₂ − 1)², x̂ = t·fs + (1 − t)·ft with t ~ U[0, 1] per sample (or ``t`` given)."""
    if t is None:
        t = torch.rand(fs.shape[0], generator=generator, dtype=fs.dtype).to(fs.device)
    t = t.reshape(-1, *([1] * (fs.dim() - 1)))
    mixed = (t * fs.detach() + (1 - t) * ft.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def critic_objective(critic, fs: torch.Tensor, ft: torch.Tensor, lambda_gp: float, t: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4, as the critic's loss to minimise: −(L_wd − λ_gp·GP). Returns (loss, L_wd, GP)."""
    wd = wasserstein_estimate(critic, fs, ft)
    gp = gradient_penalty(critic, fs, ft, t, generator)
    return -(wd - lambda_gp * gp), wd, gp


# --------------------------------------------------------------------------- phases


class AWPretrainPhase(Phase):
    """Synthetic pretraining of the hourglass: λ_res·Lˢ2.5D + λ_reg·Lˢreg (Eq. 8, 10), no critic."""

    needs = ("target", "joints2d", "depth_input")

    @classmethod
    def model_info(cls, cfg) -> dict:
        return {"family": "hourglass", "arch": cfg.model.arch, "width": cfg.model.width, "in_channels": 3,
                "num_outputs": 63, "modality": "rgb", "phase": cfg.phase, "image_size": cfg.data.image_size,
                "regularizer_width": cfg.aw_hourglass.regularizer_width}

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        self.s = cfg.aw_hourglass
        net = unwrap(model)
        self.image_size, self.heatmap_size = net.image_size, net.heatmap_size

    def forward(self, x: torch.Tensor) -> dict:
        with torch.autocast(**self.autocast):
            return self.model(self._to(x))

    def domain_terms(self, out: Mapping[str, torch.Tensor], rows: slice, joints2d: torch.Tensor,
                     depth_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the rows ``rows`` of ``out`` (one domain): (2D ground truth in heatmap pixels, predicted 2D,
        L_reg of Eq. 10 with the regulariser fed the 2D ground truth and the predicted Zⁿ)."""
        uv_gt = image_to_heatmap(self._to(joints2d).float(), self.image_size, self.heatmap_size)
        scaled = uv_gt / max(self.heatmap_size - 1, 1) * 2 - 1
        with torch.autocast(**self.autocast):
            depth_pred = unwrap(self.model).regularizer(scaled, out["zn"][rows])
        l_reg = regularizer_loss(depth_pred.float(), depth_target(self._to(depth_input).float(), self.heatmap_size))
        return uv_gt, out["uv"][rows], l_reg

    def source_losses(self, out, rows: slice, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(Lˢ2.5D, Lˢreg) of the synthetic rows ``rows`` of ``out``."""
        uv_gt, uv, l_reg = self.domain_terms(out, rows, batch["joints2d"], batch["depth_input"])
        zn_gt = self._to(batch["target"]).float()[..., 2]
        return loss_25d(uv, out["zn"][rows], uv_gt, zn_gt, self.s.lambda_alpha), l_reg

    def loss(self, batch):
        out = self.forward(batch["rgb_input"])
        l25, l_reg = self.source_losses(out, slice(None), batch)
        total = self.s.lambda_res * l25 + self.s.lambda_reg * l_reg
        return total, {"loss/total": total.item(), "loss/2.5d_source": l25.item(), "loss/reg_source": l_reg.item()}


class AWAdaptPhase(AWPretrainPhase):
    """End-to-end adaptation: one forward of the half-and-half batch (BatchNorm sees both domains),
    Eq. 11 for the network, then ``critic_steps`` critic steps (Eq. 4) on the batch's detached features."""

    uses_adapt = True
    adapt_keys = ("rgb_input", "depth_input", "joints2d")  # never joints3d / target / root / scale / K
    adapt_label_keys = ()

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        self.critic_kind = cfg.aw_hourglass.critic
        self._pending = None
        if self.critic_kind != "none":
            critic = Critic(unwrap(model).bottleneck_channels, cfg.aw_hourglass.critic_width).to(self.device)
            self.networks["critic"] = critic
            self.optimizers["critic"] = torch.optim.Adam(critic.parameters(), lr=cfg.aw_hourglass.critic_lr,
                                                         betas=(0.5, 0.9))
        self.gp_generator = self.own_generator("gradient_penalty", 7_919)  # t of the interpolates (checkpointed)

    def weighted_features(self, zs: torch.Tensor, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(α ⊙ zˢ, α ⊙ zᵗ, α): α of Eq. 5 for ``adaptive``, 1 for ``wasserstein`` (Eq. 6 vs Eq. 3)."""
        if self.critic_kind == "adaptive":
            alpha = feature_similarity(zs, zt)
        else:
            alpha = torch.ones(zs.shape[:2], device=zs.device)
        w = alpha[..., None, None]
        return w * zs.float(), w * zt.float(), alpha

    def loss(self, batch):
        target = batch["adapt"]
        n = batch["rgb_input"].shape[0]
        out = self.forward(torch.cat((batch["rgb_input"], target["rgb_input"])))
        src, tgt = slice(0, n), slice(n, None)
        l25, l_reg_s = self.source_losses(out, src, batch)
        uv_gt_t, uv_t, l_reg_t = self.domain_terms(out, tgt, target["joints2d"], target["depth_input"])
        l2d_t = loss_2d(uv_t, uv_gt_t) if self.s.target_2d else torch.zeros((), device=l25.device)
        total = self.s.lambda_res * (l25 + l2d_t) + self.s.lambda_reg * (l_reg_s + l_reg_t)
        scalars = {"loss/2.5d_source": l25.item(), "loss/2d_target": l2d_t.item(),
                   "loss/reg_source": l_reg_s.item(), "loss/reg_target": l_reg_t.item()}
        if self.critic_kind != "none":
            z = out["z"]
            m = min(n, z.shape[0] - n)  # pairs of the half-and-half batch
            fs, ft, alpha = self.weighted_features(z[:m], z[n:n + m])
            critic = self.networks["critic"]
            critic.requires_grad_(False)  # the network's step only flows through the critic
            l_wd = wasserstein_estimate(critic, fs, ft)
            critic.requires_grad_(True)
            total = total + self.s.lambda_wd * l_wd
            self._pending = (fs.detach(), ft.detach())
            scalars.update({"loss/wd": l_wd.item(), "alpha/mean": alpha.mean().item(),
                            "alpha/min": alpha.min().item()})
        scalars["loss/total"] = total.item()
        return total, scalars

    def update(self, batch, loss):
        scalars = super().update(batch, loss)
        if self._pending is None:
            return scalars
        fs, ft = self._pending
        self._pending = None
        critic, optimizer = self.networks["critic"], self.optimizers["critic"]
        for _ in range(self.s.critic_steps):
            c_loss, wd, gp = critic_objective(critic, fs, ft, self.s.lambda_gp, generator=self.gp_generator)
            optimizer.zero_grad(set_to_none=True)
            c_loss.backward()
            optimizer.step()
        scalars.update({"critic/wd": wd.item(), "critic/gp": gp.item()})
        return scalars


PHASE_CLASSES = {"aw_pretrain": AWPretrainPhase, "aw_adapt": AWAdaptPhase}

__all__ = ["PHASE_CLASSES", "AWPretrainPhase", "AWAdaptPhase", "loss_2d", "loss_25d", "depth_target",
           "regularizer_loss", "feature_similarity", "wasserstein_estimate", "gradient_penalty", "critic_objective"]
