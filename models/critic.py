"""WGAN critic of the Adaptive Wasserstein Hourglass (Eq. 2–4): conv → global pool → FC(1), no BatchNorm.

It reads the (α-weighted) bottleneck z of :class:`models.hourglass.Hourglass25D` (B, C, h, w) and
returns one score per sample (B,). BatchNorm is left out because the gradient penalty of Eq. 4 is
taken per interpolate, which batch statistics would couple (Gulrajani et al. 2017).
"""
from __future__ import annotations

import torch
from torch import nn


class Critic(nn.Module):
    """f_d: two 3×3 convolutions with LeakyReLU(0.2), global average pool, a linear layer to one score."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.fc = nn.Linear(width, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(z).mean(dim=(2, 3))).squeeze(-1)


__all__ = ["Critic"]
