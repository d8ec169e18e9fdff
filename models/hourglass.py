"""Hourglass with a latent 2.5D output (Adaptive Wasserstein Hourglass, "wo/FSS"; Iqbal et al. 2018).

Encoder: the toolkit ResNet (:mod:`models.resnet`) from its stem to ``layer3``; its output is the
bottleneck ``z`` (C×H/16×W/16; 4w×16×16 for a width-w ResNet-18 at 256 px) that the critic of
:mod:`models.critic` sees. Decoder: two upsampling stages with skip connections from ``layer2`` and
``layer1`` (Newell et al.'s hourglass, one stack, no intermediate supervision) to output maps at
H/4 × W/4 (64×64 at 256 px) with 2K channels: K latent 2D heatmaps and K depth maps.

From the maps (:func:`latent_25d`): H̄ = spatial softmax of each heatmap; the 2D joint is its
soft-argmax Σ H̄·(x, y) in heatmap pixels; the normalised root-relative depth is Zʳ = Σ H̄ ⊙ Hᶻ,
trained against Zⁿ = (Z − Z_root)/s of Eq. 7 (C = 1; root = wrist, s = middle MCP–PIP bone, the
toolkit's normalisation, ``datasets/joints.py``). At test time :func:`reconstruct_normalized`
lifts 2D + Zⁿ to 3D with the ground-truth root and scale and the crop intrinsics K (the paper's
and the toolkit's protocol) and returns the toolkit's normalised target (J − root)/scale.

The depth regulariser of Eq. 9 (:class:`DepthRegularizer`: FC → transposed convolutions → a depth
image Dₙ at heatmap resolution, from the 2D ground truth and the predicted Zⁿ) is a submodule,
trained with the network and unused at evaluation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.resnet import ResNet, ResNetSpec

NUM_JOINTS = 21
ROOT = 0  # wrist (datasets/joints.py)


def soft_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial softmax and soft-argmax of ``(B, K, h, w)`` logits: ``(H̄ (B,K,h,w), uv (B,K,2))``, uv in
    heatmap pixels (x = column, y = row, pixel centres at integers)."""
    b, k, h, w = logits.shape
    prob = torch.softmax(logits.float().reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    u = (prob.sum(dim=2) * xs).sum(dim=-1)
    v = (prob.sum(dim=3) * ys).sum(dim=-1)
    return prob, torch.stack((u, v), dim=-1)


def latent_25d(maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Latent 2.5D heatmaps (Iqbal et al.): ``maps`` (B, 2K, h, w) → ``uv`` (B,K,2) heatmap pixels,
    ``zn`` (B,K) = Σ H̄ ⊙ Hᶻ (the Zⁿ of Eq. 7), ``heatmaps`` H̄ (B,K,h,w)."""
    k = maps.shape[1] // 2
    prob, uv = soft_argmax(maps[:, :k])
    zn = (prob * maps[:, k:].float()).sum(dim=(2, 3))
    return {"uv": uv, "zn": zn, "heatmaps": prob}


def image_to_heatmap(uv: torch.Tensor, image_size: int, heatmap_size: int) -> torch.Tensor:
    """Crop pixels → heatmap pixels (pixel centres aligned): ``(u + ½)·h/H − ½``."""
    ratio = heatmap_size / image_size
    return (uv + 0.5) * ratio - 0.5


def heatmap_to_image(uv: torch.Tensor, image_size: int, heatmap_size: int) -> torch.Tensor:
    """Inverse of :func:`image_to_heatmap`."""
    ratio = image_size / heatmap_size
    return (uv + 0.5) * ratio - 0.5


def reconstruct_normalized(uv: torch.Tensor, zn: torch.Tensor, K: torch.Tensor, root: torch.Tensor,
                           scale: torch.Tensor) -> torch.Tensor:
    """2.5D → the normalised 3D target: ``Z = Z_root + s·Zⁿ``, ``J = Z·K⁻¹(u, v, 1)``, ``(J − root)/s``.

    ``uv`` (B,K,2) crop pixels, ``zn`` (B,K), ``K`` (B,3,3), ``root`` (B,3) metres, ``scale`` (B,).
    Exact inverse of projecting J with K and normalising its depth as Eq. 7 (C = 1).
    """
    uv, zn, K, root, scale = (t.to(torch.float64) for t in (uv, zn, K, root, scale))
    z = root[:, None, 2] + scale[:, None] * zn  # (B, K)
    homogeneous = torch.cat((uv, torch.ones_like(uv[..., :1])), dim=-1)  # (B, K, 3)
    rays = torch.linalg.solve(K, homogeneous.transpose(1, 2)).transpose(1, 2)  # K⁻¹(u, v, 1)
    rays = rays / rays[..., 2:3]
    joints = rays * z[..., None]
    return ((joints - root[:, None, :]) / scale[:, None, None]).to(torch.float32)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DepthRegularizer(nn.Module):
    """Eq. 9: (2D ground truth in [−1, 1] of the heatmap, predicted Zⁿ) (B, 3K) → FC → transposed
    convolutions (×2 each, from 4×4; resized when size is not 4·2ⁿ) → depth image Dₙ (B, 1, size, size) in [0, 1] (sigmoid)."""

    def __init__(self, size: int, width: int = 32, joints: int = NUM_JOINTS):
        super().__init__()
        if size < 4:
            raise ValueError(f"the depth regulariser's output size should be >= 4, got {size}")
        self.size, self.width = size, width
        self.fc = nn.Sequential(nn.Linear(3 * joints, width * 16), nn.ReLU(inplace=True))
        layers, resolution = [], 4
        while resolution < size:
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            resolution *= 2
        self.up = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, uv_normalized: torch.Tensor, zn: torch.Tensor) -> torch.Tensor:
        x = torch.cat((uv_normalized.flatten(1), zn.flatten(1)), dim=1)
        x = self.fc(x).reshape(-1, self.width, 4, 4)
        x = self.up(x)
        if x.shape[-1] != self.size:  # sizes that are not 4·2^n
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.out(x))


class Hourglass25D(nn.Module):
    """ResNet encoder (stem..layer3) + decoder with skips → 2K latent 2.5D maps at H/4.

    ``forward(x)`` (training) → ``{"maps", "uv" (heatmap px), "zn", "z" (bottleneck)}``;
    ``forward(x, K, root, scale)`` (evaluation, :data:`context_keys`) adds ``"pred"`` (B, 63): the
    normalised joints (J − root)/scale reconstructed from 2D + Zⁿ (:func:`reconstruct_normalized`).
    """

    context_keys = ("K", "root", "scale")

    def __init__(self, arch: str = "resnet18", width: int = 64, in_channels: int = 3, image_size: int = 256,
                 joints: int = NUM_JOINTS, regularizer_width: int = 32):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"the hourglass needs an image size divisible by 16, got {image_size}")
        self.image_size, self.joints = int(image_size), int(joints)
        self.heatmap_size = self.image_size // 4
        encoder = ResNet(ResNetSpec(name=arch, in_channels=in_channels, width=width))
        del encoder.layer4, encoder.fc  # stem..layer3 only
        self.encoder = encoder
        c1 = encoder.layer1[-1].conv1.out_channels * type(encoder.layer1[-1]).expansion
        c2, c3 = 2 * c1, 4 * c1
        self.bottleneck_channels = c3
        d = max(2 * width, 16)
        self.lateral3 = _conv_bn_relu(c3, d)
        self.skip2, self.skip1 = _conv_bn_relu(c2, d), _conv_bn_relu(c1, d)
        self.fuse2, self.fuse1 = _conv_bn_relu(d, d), _conv_bn_relu(d, d)
        self.head = nn.Conv2d(d, 2 * joints, 1)
        self.regularizer = DepthRegularizer(self.heatmap_size, regularizer_width, joints)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.encoder
        x = F.max_pool2d(F.relu(e.bn1(e.conv1(x))), 3, stride=2, padding=1)
        l1 = e.layer1(x)
        l2 = e.layer2(l1)
        return {"layer1": l1, "layer2": l2, "z": e.layer3(l2)}

    def decode(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.lateral3(feats["z"])
        x = F.interpolate(x, size=feats["layer2"].shape[-2:], mode="nearest") + self.skip2(feats["layer2"])
        x = self.fuse2(x)
        x = F.interpolate(x, size=feats["layer1"].shape[-2:], mode="nearest") + self.skip1(feats["layer1"])
        return self.head(self.fuse1(x))

    def forward(self, x: torch.Tensor, K: torch.Tensor | None = None, root: torch.Tensor | None = None,
                scale: torch.Tensor | None = None) -> dict:
        feats = self.encode(x)
        maps = self.decode(feats)
        out = {"maps": maps, "z": feats["z"], **latent_25d(maps)}
        if K is not None and root is not None and scale is not None:
            uv = heatmap_to_image(out["uv"], self.image_size, maps.shape[-1])
            out["pred"] = reconstruct_normalized(uv, out["zn"], K, root, scale).flatten(1)
        return out


def from_info(info) -> Hourglass25D:
    """The network of a checkpoint's ``model_info`` (family ``hourglass``)."""
    return Hourglass25D(arch=info.get("arch", "resnet18"), width=int(info["width"]),
                        in_channels=int(info.get("in_channels", 3)), image_size=int(info["image_size"]),
                        joints=int(info.get("joints", NUM_JOINTS)),
                        regularizer_width=int(info.get("regularizer_width", 32)))


__all__ = ["Hourglass25D", "DepthRegularizer", "from_info", "soft_argmax", "latent_25d", "reconstruct_normalized",
           "image_to_heatmap", "heatmap_to_image"]
