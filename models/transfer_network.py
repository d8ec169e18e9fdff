"""Networks of supervision transfer (Gupta, Hoffman & Malik, CVPR 2016): Ψ, the adapters t_p and frozen Φ.

The method (phases, Eq. 2, the zero-shot composition) is ``training/methods/supervision_transfer.py``;
this module holds the networks it trains and evaluates (family ``supervision_transfer`` of
:data:`models.NETWORK_FAMILIES`) and the HHA-like input encoding they apply.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from models import build_model
from models.resnet import STAGES

FAMILY = "supervision_transfer"


def hha_like(depth: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) normalised depth d̃ → (B,3,H,W): nearness −d̃, normal components n_y and n_z (see module doc)."""
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"the hha encoding expects depth (B, 1, H, W), got {tuple(depth.shape)}")
    k = depth.shape[-2] / 2.0
    padded = F.pad(depth, (1, 1, 1, 1), mode="replicate")
    d_du = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2.0
    d_dv = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2.0
    normal = torch.cat([-k * d_du, -k * d_dv, torch.ones_like(depth)], dim=1)
    normal = normal / normal.norm(dim=1, keepdim=True)
    return torch.cat([-depth, normal[:, 1:2], normal[:, 2:3]], dim=1)


def stage_channels(network: nn.Module, stage: str) -> int:
    """Channels of a ResNet stage's output (its last block's last BatchNorm)."""
    last = getattr(network, stage)[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class TransferNetwork(nn.Module):
    """Ψ (``student``) on the encoded U input; with ``teacher`` also t_p (``adapters``) and frozen Φ.

    ``forward(x)`` returns ``{"pred", "features"}`` (Ψ's stages): without a teacher ``pred`` is Ψ's own
    head; with one it is the zero-shot composition Φ_head(Φ_{>p}(c_p·t_p(Ψ_p(x)))) of the deepest point p.
    """

    def __init__(self, student: Mapping[str, Any], encoding: str = "normalised",
                 teacher: Mapping[str, Any] | None = None, points: tuple[str, ...] = ()):
        super().__init__()
        self.encoding = encoding
        self.student = build_model(student["arch"], int(student["in_channels"]), int(student["width"]),
                                   int(student.get("num_outputs", 63)))
        self.teacher = None
        self.points = tuple(sorted(points, key=STAGES.index))
        if teacher is not None:
            if not self.points:
                raise ValueError("a transfer network needs at least one transfer point")
            self.teacher = build_model(teacher["arch"], int(teacher["in_channels"]), int(teacher["width"]),
                                       int(teacher.get("num_outputs", 63)))
            self.adapters = nn.ModuleDict({p: nn.Sequential(
                nn.Conv2d(stage_channels(self.student, p), stage_channels(self.teacher, p), 1), nn.ReLU())
                for p in self.points})
            same = (student["arch"], int(student["width"])) == (teacher["arch"], int(teacher["width"]))
            # c_p: 1 for one architecture, else measured on the first batch (0 = not measured yet)
            self.register_buffer("feature_scale", torch.full((len(self.points),), 1.0 if same else 0.0))
            self.teacher.requires_grad_(False)
            self.student.fc.requires_grad_(False)  # the transfer never trains Ψ's head

    def train(self, mode: bool = True):
        """Φ stays in eval mode whatever is asked (its BatchNorm statistics never change)."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return hha_like(x) if self.encoding == "hha" else x

    def adapted(self, features: Mapping[str, torch.Tensor], point: str, size=None) -> torch.Tensor:
        """t_p(Ψ_p), resized to ``size`` (Φ's spatial size) when it differs."""
        out = self.adapters[point](features[point])
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out

    def zero_shot(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        point = self.points[-1]
        x = self.adapted(features, point) * self.feature_scale[-1]
        for stage in STAGES[STAGES.index(point) + 1:]:
            x = getattr(self.teacher, stage)(x)
        return self.teacher.forward_head({"layer4": x})

    def forward(self, x: torch.Tensor) -> dict:
        features = self.student.forward_features(self.encode(x))
        pred = self.student.forward_head(features) if self.teacher is None else self.zero_shot(features)
        return {"pred": pred, "features": features}


def network_from_info(info: Mapping[str, Any]) -> TransferNetwork:
    """Builder of family ``supervision_transfer`` (:data:`models.NETWORK_FAMILIES`)."""
    return TransferNetwork(info, info.get("encoding", "normalised"), info.get("teacher"), tuple(info.get("points", ())))
