"""Losses of cross-modal knowledge distillation (Zhao et al., "Knowledge as Priors", CVPR 2020, Sect. 3).

One function per equation of the main paper:

- :func:`regression_loss`   L_REG, Eq. (1)
- :func:`activation_loss`   L_ACT, Eq. (2)
- :func:`attention_map`     A_j = sum_c Q_j^(c)^2, then A_j / ||A_j|| (text above Eq. 3)
- :func:`attention_loss`    L_ATT, Eq. (3)
- :func:`distillation_loss` L_DIST = L_ACT + lambda * L_ATT, Eq. (4)
- :func:`student_objective` G = L_REG + L_DIST, Eq. (8)

Feature dictionaries are those of ``models.ResNet.forward_features``: stage name ->
``(B, C, H, W)``. The teacher's features must come from a frozen teacher (eval mode,
computed under ``torch.no_grad()``); see :func:`teacher_features`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_LAYERS = ("layer1", "layer2", "layer3", "layer4")
ACTIVATION_LAYER = "layer4"
ATTENTION_WEIGHT = 1.0e3  # lambda of Eq. (4), paper Sect. 3


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_REG, Eq. (1): ``||g(x) - y||^2`` as the mean squared error over batch and the 63 numbers.

    Args:
        pred: ``(B, 63)`` network output.
        target: normalised joints ``y = (J - J_root) / scale``, ``(B, 63)`` or ``(B, 21, 3)``.
    Returns:
        scalar ``mean((pred - y)^2)``.
    """
    if target.shape != pred.shape:
        if target.numel() != pred.numel() or target.shape[0] != pred.shape[0]:
            raise ValueError(f"regression_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                             "do not hold the same number of values per sample")
        target = target.reshape(pred.shape)
    return F.mse_loss(pred, target)


def activation_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """L_ACT, Eq. (2): ``||Q_l(x; f) - Q_l(x~; g)||^2`` on the last activation maps.

    Args:
        student_feat, teacher_feat: ``(B, C, H, W)`` outputs of ``layer4`` (before pooling),
            of identical shape (teacher and student share the architecture).
    Returns:
        scalar mean of squared differences over all ``B*C*H*W`` elements.
    """
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(f"activation_loss: student map {tuple(student_feat.shape)} and teacher map "
                         f"{tuple(teacher_feat.shape)} differ; L_ACT needs identical shapes")
    return F.mse_loss(student_feat, teacher_feat)


def attention_map(feat: torch.Tensor) -> torch.Tensor:
    """Spatial attention map of Eq. (3): ``A = sum_c Q^(c)^2``, flattened and l2-normalised.

    Args:
        feat: ``(B, C, H, W)`` activation map Q_j.
    Returns:
        ``(B, H*W)`` rows of unit l2 norm (a zero map stays zero).
    """
    if feat.dim() != 4:
        raise ValueError(f"attention_map expects (B, C, H, W), got {tuple(feat.shape)}")
    a = feat.pow(2).sum(dim=1).flatten(1)
    return F.normalize(a, p=2, dim=1)


def attention_loss(student_feats: Mapping[str, torch.Tensor], teacher_feats: Mapping[str, torch.Tensor],
                   layers: Sequence[str] = ATTENTION_LAYERS) -> torch.Tensor:
    """L_ATT, Eq. (3): ``sum_{j in I} ||A_j(x; f) - A_j(x~; g)||^2`` with normalised maps.

    Attention-transfer convention (Zagoruyko & Komodakis, ICLR 2017): for each layer the
    squared difference is averaged over batch and the ``H*W`` positions; layers are summed.

    Args:
        student_feats, teacher_feats: stage name -> ``(B, C, H, W)``; channels may differ,
            spatial sizes must match.
        layers: the set I of layer pairs (default ``layer1..layer4``).
    Returns:
        scalar.
    """
    total = None
    for name in layers:
        s, t = student_feats[name], teacher_feats[name]
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise ValueError(f"attention_loss: {name} student {tuple(s.shape)} and teacher {tuple(t.shape)} "
                             "need the same batch size and spatial size")
        term = (attention_map(s) - attention_map(t)).pow(2).mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("attention_loss: no layers given")
    return total


def distillation_loss(student_feats: Mapping[str, torch.Tensor], teacher_feats: Mapping[str, torch.Tensor],
                      attention_weight: float = ATTENTION_WEIGHT,
                      layers: Sequence[str] = ATTENTION_LAYERS,
                      activation_layer: str = ACTIVATION_LAYER) -> torch.Tensor:
    """L_DIST, Eq. (4): ``L_ACT + lambda * L_ATT`` with ``lambda = 1e3`` by default.

    Args:
        student_feats, teacher_feats: stage name -> ``(B, C, H, W)`` (teacher detached).
        attention_weight: lambda.
        layers: attention layer set I of Eq. (3).
        activation_layer: the "last activation map" of Eq. (2).
    """
    l_act = activation_loss(student_feats[activation_layer], teacher_feats[activation_layer])
    return l_act + attention_weight * attention_loss(student_feats, teacher_feats, layers)


def student_objective(pred: torch.Tensor, target: torch.Tensor, student_feats: Mapping[str, torch.Tensor],
                      teacher_feats: Mapping[str, torch.Tensor],
                      attention_weight: float = ATTENTION_WEIGHT) -> torch.Tensor:
    """G, Eq. (8): ``L_REG(x, y; theta) + L_DIST(x, x~; theta)``.

    Args:
        pred: ``(B, 63)`` student output; target: ``(B, 63)`` or ``(B, 21, 3)``.
        student_feats, teacher_feats: stage name -> ``(B, C, H, W)``.
    """
    return regression_loss(pred, target) + distillation_loss(student_feats, teacher_feats, attention_weight)


@torch.no_grad()
def teacher_features(teacher: nn.Module, depth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Features of the frozen teacher: puts it in eval mode and runs it without gradients.

    Args:
        teacher: a network whose ``forward`` returns ``{"pred", "features"}`` (``models.ResNet``).
        depth: ``(B, 1, H, W)`` normalised depth input x~.
    Returns:
        stage name -> ``(B, C, H, W)`` detached maps.
    """
    teacher.eval()
    return dict(teacher(depth)["features"])
