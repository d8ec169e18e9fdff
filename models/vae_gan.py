"""LSPS networks (Abdi et al., BMVC 2018, appendix Tables 2-4): a pose VAE, two depth VAE-GANs and the
maps between their latent spaces, held by one module :class:`LSPSNet`.

==========  ===========================================================  ==========================
part        layers (paper, channels ×``width``/64)                       shared between domains
==========  ===========================================================  ==========================
E_y, G_y    3J → FC(h) → μ, log σ² (20);  20 → FC(h) → 3J (Table 2)      —
E_s, E_r    conv64 k7 s1, conv128 k3 s2, conv256 k3 s2 (IN, LReLU),      the last residual block
            4 residual blocks (IN); the last gives μ (z = μ + N(0, I))
G_s, G_r    4 residual blocks, tconv256 s2, tconv128 s2, conv1 k1 tanh   the first residual block
D_s, D_r    conv64, conv128, conv256, conv512, conv1024 … (k3 s2,        all but the first two
            LReLU) until 2×2, conv1 k2 → 1×1 (sigmoid in the loss)       convs, with the head
M           20 → tconv1024 k4 s1 → tconv (1024) 512 256 k4 s2 → latent   —
P           the discriminator trunk of the domain + conv20 k2            the whole trunk with D_s/D_r
==========  ===========================================================  ==========================

Sizes: input ``S×S`` (the paper: 128), latent ``C×S/4×S/4`` with ``C = 256·width/64`` (the paper's
256×32×32; Table 4's "N512" residual blocks contradict M's 256-channel output, Table 3, and we
follow M). The discriminator has ``log2(S) − 1`` stride-2 convs (1×1 output at any S, the paper's
five reach 4×4 at 128 and its k2 head then gives 3×3); M has ``log2(S/16)`` stride-2 tconvs after the
first (the paper's three at 128). The depth images have one channel (Table 4's "N3" output is the
code's image size, not depth). ``width`` scales every channel count (64 = the paper); the
synthetic analogue on CPU uses 32² inputs and width 8.

The evaluated network (``from_info``, family ``lsps``) is the whole module; its ``forward(x)`` is the
prediction ``G_y(P(x))`` of the branch ``info["branch"]`` (``real``: D_r's first layers, the paper's
prediction on real depth; ``synthetic``: D_s's, the synthetic-only and real-supervised baselines) and
returns ``{"pred": (B, 63)}`` normalised joints.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

DOMAINS = ("s", "r")


def scaled(channels: int, width: int) -> int:
    """A channel count of the paper's ladder (64 … 1024) scaled by ``width / 64`` (at least 1)."""
    return max(1, channels * width // 64)


def lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=False)


class ResBlock(nn.Module):
    """conv3-IN-LReLU-conv3-IN plus identity (Table 4's RESBLK)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels), lrelu(),
                                  nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PoseVAE(nn.Module):
    """E_y: 3J → FC(hidden) LReLU → μ, log σ² (latent); G_y: latent → FC(hidden) LReLU → 3J (Table 2).

    The encoder outputs log σ² rather than σ² (same model, stable parameterisation)."""

    def __init__(self, pose_dim: int = 63, hidden: int = 30, latent: int = 20):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(pose_dim, hidden), lrelu())
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), lrelu(), nn.Linear(hidden, pose_dim))

    def encode(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, 3J) → μ, log σ² (B, latent)."""
        h = self.enc(y)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent) → pose (B, 3J)."""
        return self.dec(z)


def _encoder_front(width: int, latent: int) -> nn.Sequential:
    c64, c128 = scaled(64, width), scaled(128, width)
    return nn.Sequential(nn.Conv2d(1, c64, 7, 1, 3), nn.InstanceNorm2d(c64), lrelu(),
                         nn.Conv2d(c64, c128, 3, 2, 1), nn.InstanceNorm2d(c128), lrelu(),
                         nn.Conv2d(c128, latent, 3, 2, 1), nn.InstanceNorm2d(latent), lrelu(),
                         ResBlock(latent), ResBlock(latent), ResBlock(latent))


def _generator_back(width: int, latent: int) -> nn.Sequential:
    c256, c128 = scaled(256, width), scaled(128, width)
    return nn.Sequential(ResBlock(latent), ResBlock(latent), ResBlock(latent),
                         nn.ConvTranspose2d(latent, c256, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(c256), lrelu(),
                         nn.ConvTranspose2d(c256, c128, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(c128), lrelu(),
                         nn.Conv2d(c128, 1, 1), nn.Tanh())


def discriminator_channels(size: int, width: int) -> list[int]:
    """Output channels of the ``log2(size) − 1`` stride-2 convs: 64, 128, 256, 512, 1024, 1024, … scaled."""
    count = int(math.log2(size)) - 1
    ladder = [64, 128, 256, 512, 1024]
    return [scaled(ladder[min(k, len(ladder) - 1)], width) for k in range(count)]


def _convs(channels: list[int], first_in: int) -> nn.Sequential:
    layers, previous = [], first_in
    for c in channels:
        layers += [nn.Conv2d(previous, c, 3, 2, 1), lrelu()]
        previous = c
    return nn.Sequential(*layers)


def _mapping(width: int, latent_dim: int, latent: int, size: int) -> nn.Sequential:
    """M (Table 3): 20 → tconv k4 s1 (4×4) → stride-2 tconvs k4 to (size/4)²; the last has ``latent`` channels."""
    ups = int(math.log2(size // 16))
    middle = ([1024] * max(0, ups - 3) + [1024, 512])[-(ups - 1):] if ups > 1 else []
    ladder = [scaled(c, width) for c in middle]
    layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, scaled(1024, width), 4, 1, 0), lrelu()]
    previous = scaled(1024, width)
    for c in ladder:
        layers += [nn.ConvTranspose2d(previous, c, 4, 2, 1), lrelu()]
        previous = c
    layers.append(nn.ConvTranspose2d(previous, latent, 4, 2, 1))
    return nn.Sequential(*layers)


class LSPSNet(nn.Module):
    """Every LSPS network; the domain-shared layers are single modules used by both domains.

    Args: size: input S (a power of two ≥ 32); width: channel scale (64 = paper); pose_hidden: the pose
    VAE's hidden units (paper 30, code 50); pose_latent: 20; pose_dim: 3J = 63; branch: the domain whose
    posterior :meth:`forward` evaluates (``real`` or ``synthetic``).
    """

    def __init__(self, size: int = 128, width: int = 64, pose_hidden: int = 30, pose_latent: int = 20,
                 pose_dim: int = 63, branch: str = "real"):
        super().__init__()
        if size < 32 or size & (size - 1):
            raise ValueError(f"LSPSNet: the input size should be a power of two >= 32, found {size}")
        if branch not in ("real", "synthetic"):
            raise ValueError(f"LSPSNet: branch should be 'real' or 'synthetic', found {branch!r}")
        self.size, self.width, self.branch = size, width, branch
        self.latent_channels = latent = scaled(256, width)
        self.pose = PoseVAE(pose_dim, pose_hidden, pose_latent)
        # E_s, E_r: private front, shared last residual block (μ)
        self.enc_front = nn.ModuleDict({d: _encoder_front(width, latent) for d in DOMAINS})
        self.enc_shared = ResBlock(latent)
        # G_s, G_r: shared first residual block, private rest
        self.gen_shared = ResBlock(latent)
        self.gen_back = nn.ModuleDict({d: _generator_back(width, latent) for d in DOMAINS})
        # D_s, D_r: private first two convs; shared trunk and head; P: the trunk + its own head
        channels = discriminator_channels(size, width)
        self.disc_front = nn.ModuleDict({d: _convs(channels[:2], 1) for d in DOMAINS})
        self.disc_shared = _convs(channels[2:], channels[1])
        self.disc_head = nn.Conv2d(channels[-1], 1, 2, 1, 0)
        self.pos_head = nn.Conv2d(channels[-1], pose_latent, 2, 1, 0)
        self.mapping = _mapping(width, pose_latent, latent, size)

    # ------------------------------------------------------------------ the parts

    @staticmethod
    def _domain(domain: str) -> str:
        if domain not in DOMAINS:
            raise ValueError(f"domain should be 's' (synthetic) or 'r' (real), found {domain!r}")
        return domain

    def encode(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """E_{s|r;μ}: depth (B,1,S,S) → μ (B,C,S/4,S/4)."""
        return self.enc_shared(self.enc_front[self._domain(domain)](x))

    def generate(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        """G_{s|r}: latent (B,C,S/4,S/4) → depth (B,1,S,S) in [−1, 1]."""
        return self.gen_back[self._domain(domain)](self.gen_shared(z))

    def trunk(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """D_{s|r,φ}: the discriminator's penultimate activations (B, C_last, 2, 2) (Eq. 9's features)."""
        return self.disc_shared(self.disc_front[self._domain(domain)](x))

    def discriminate(self, x: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
        """D_{s|r}: depth → (logit (B,), features (B, C_last, 2, 2)); the sigmoid is in the loss."""
        features = self.trunk(x, domain)
        return self.disc_head(features).flatten(1).squeeze(1), features

    def posterior(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """P: depth (B,1,S,S) → pose latent (B, 20), through the domain's discriminator trunk."""
        return self.pos_head(self.trunk(x, domain)).flatten(1)

    def map(self, z_y: torch.Tensor) -> torch.Tensor:
        """M: pose latent (B, 20) → depth latent (B,C,S/4,S/4)."""
        return self.mapping(z_y[:, :, None, None])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The evaluated prediction G_y(P(x)) of :attr:`branch`: depth (B,1,S,S) → {"pred": (B, 63)}."""
        z_y = self.posterior(x, "r" if self.branch == "real" else "s")
        return {"pred": self.pose.decode(z_y)}

    # ------------------------------------------------------------------ parameter groups of the three stages

    def pose_parameters(self) -> list[nn.Parameter]:
        return list(self.pose.parameters())

    def generator_parameters(self) -> list[nn.Parameter]:
        """E_s, E_r, G_s, G_r and M: what the VAE-GAN's generator step updates (stage 2)."""
        parts = (self.enc_front, self.enc_shared, self.gen_shared, self.gen_back, self.mapping)
        return [p for part in parts for p in part.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """D_s, D_r (fronts, shared trunk, head): the discriminator step (stage 2)."""
        parts = (self.disc_front, self.disc_shared, self.disc_head)
        return [p for part in parts for p in part.parameters()]

    def posterior_parameters(self) -> list[nn.Parameter]:
        """P: the discriminator fronts and trunk it shares and its own head (stage 3)."""
        parts = (self.disc_front, self.disc_shared, self.pos_head)
        return [p for part in parts for p in part.parameters()]


def from_info(info: Mapping[str, Any]) -> LSPSNet:
    """The network of a checkpoint's ``model_info`` (family ``lsps``)."""
    return LSPSNet(size=int(info["image_size"]), width=int(info["width"]), pose_hidden=int(info.get("pose_hidden", 30)),
                   pose_latent=int(info.get("pose_latent", 20)), pose_dim=int(info.get("num_outputs", 63)),
                   branch=str(info.get("branch", "real")))


__all__ = ["LSPSNet", "PoseVAE", "ResBlock", "from_info", "scaled", "discriminator_channels"]
