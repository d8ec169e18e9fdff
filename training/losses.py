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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_LAYERS = ("layer1", "layer2", "layer3", "layer4")
ACTIVATION_LAYER = "layer4"
ATTENTION_WEIGHT = 1.0e3  # lambda of Eq. (4), paper Sect. 3

#: L_REG reductions: ``mean`` over batch and the 63 numbers (MSE), or ``sum`` = Eq. (1)'s
#: per-sample squared norm ``||g(x) - y||^2`` averaged over the batch (63× the mean).
REG_REDUCTIONS = ("mean", "sum")
#: L_ATT normalisations: ``resolution`` (default) makes lambda mean at every crop size what it
#: means at the paper's 256-px crops; ``literal`` is the attention-transfer mean over positions.
ATT_NORMALIZATIONS = ("resolution", "literal")
#: Crop size at which the two normalisations agree (paper Sect. 5.1: 256×256 inputs).
REFERENCE_INPUT_SIZE = 256
#: Total stride of each ResNet stage (``models.resnet``): a layer-j map of a 256-px crop has
#: ``(256 / stride_j)²`` positions.
STAGE_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def regression_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L_REG, Eq. (1): ``||g(x) - y||^2``.

    Args:
        pred: ``(B, 63)`` network output.
        target: normalised joints ``y = (J - J_root) / scale``, ``(B, 63)`` or ``(B, 21, 3)``.
        reduction: ``"mean"`` — mean squared error over batch and the 63 numbers;
            ``"sum"`` — Eq. (1) literally, the per-sample squared norm, averaged over the
            batch (63× ``"mean"``; it changes the balance against L_DIST and what σ, β mean).
    Returns:
        scalar.
    """
    if reduction not in REG_REDUCTIONS:
        raise ValueError(f"regression_loss: reduction should be one of {REG_REDUCTIONS}, found {reduction!r}")
    if target.shape != pred.shape:
        if target.numel() != pred.numel() or target.shape[0] != pred.shape[0]:
            raise ValueError(f"regression_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                             "do not hold the same number of values per sample")
        target = target.reshape(pred.shape)
    if reduction == "sum":
        return (pred - target).pow(2).sum(dim=1).mean()
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
                   layers: Sequence[str] = ATTENTION_LAYERS, normalization: str = "literal") -> torch.Tensor:
    """L_ATT, Eq. (3): ``sum_{j in I} ||A_j(x; f) - A_j(x~; g)||^2`` with normalised maps.

    Each ``||Ā_s − Ā_t||² = 2 − 2cos`` lies in [0, 2] whatever the map size, so the
    normalisation decides what λ means:

    - ``"literal"`` — attention-transfer convention (Zagoruyko & Komodakis, ICLR 2017): the
      squared difference averaged over batch and the ``H·W`` positions of each layer, i.e.
      ``Σ_b ||ΔĀ_b||² / (B·H·W)``; a term then scales as 1/(H·W), so λ = 1e3 weighs 16× more
      at 64-px crops than at 256 px.
    - ``"resolution"`` — ``Σ_b ||ΔĀ_b||² / (B·N_j)`` with ``N_j = (256 / stride_j)²`` the number of
      positions the layer has at the paper's 256-px crops (:data:`STAGE_STRIDES`): equal to
      ``"literal"`` at 256 px and, at any crop size, λ weighs the bounded per-sample distance as
      it does there.

    Layers are summed.

    Args:
        student_feats, teacher_feats: stage name -> ``(B, C, H, W)``; channels may differ,
            spatial sizes must match.
        layers: the set I of layer pairs (default ``layer1..layer4``).
        normalization: ``"literal"`` or ``"resolution"`` (:data:`ATT_NORMALIZATIONS`).
    Returns:
        scalar.
    """
    if normalization not in ATT_NORMALIZATIONS:
        raise ValueError(f"attention_loss: normalization should be one of {ATT_NORMALIZATIONS}, found {normalization!r}")
    total = None
    for name in layers:
        s, t = student_feats[name], teacher_feats[name]
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise ValueError(f"attention_loss: {name} student {tuple(s.shape)} and teacher {tuple(t.shape)} "
                             "need the same batch size and spatial size")
        squared = (attention_map(s) - attention_map(t)).pow(2)
        if normalization == "literal":
            term = squared.mean()
        else:
            positions = (REFERENCE_INPUT_SIZE // STAGE_STRIDES[name]) ** 2
            term = squared.sum() / (squared.shape[0] * positions)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("attention_loss: no layers given")
    return total


def distillation_loss(student_feats: Mapping[str, torch.Tensor], teacher_feats: Mapping[str, torch.Tensor],
                      attention_weight: float = ATTENTION_WEIGHT,
                      layers: Sequence[str] = ATTENTION_LAYERS,
                      activation_layer: str = ACTIVATION_LAYER, *, activation_weight: float = 1.0,
                      attention_normalization: str = "literal") -> torch.Tensor:
    """L_DIST, Eq. (4): ``w_act·L_ACT + λ·L_ATT`` with ``w_act = 1``, ``λ = 1e3`` by default.

    Args:
        student_feats, teacher_feats: stage name -> ``(B, C, H, W)`` (teacher detached).
        attention_weight: λ (0 = L_ACT only).
        layers: attention layer set I of Eq. (3).
        activation_layer: the "last activation map" of Eq. (2).
        activation_weight: ``w_act``, the weight of L_ACT (1 in the paper; 0 = L_ATT only).
        attention_normalization: see :func:`attention_loss`.
    """
    total = torch.zeros((), device=student_feats[activation_layer].device)
    if activation_weight:
        total = total + activation_weight * activation_loss(student_feats[activation_layer],
                                                            teacher_feats[activation_layer])
    if attention_weight:
        total = total + attention_weight * attention_loss(student_feats, teacher_feats, layers, attention_normalization)
    return total


def student_objective(pred: torch.Tensor, target: torch.Tensor, student_feats: Mapping[str, torch.Tensor],
                      teacher_feats: Mapping[str, torch.Tensor],
                      attention_weight: float = ATTENTION_WEIGHT) -> torch.Tensor:
    """G, Eq. (8): ``L_REG(x, y; theta) + L_DIST(x, x~; theta)``.

    Args:
        pred: ``(B, 63)`` student output; target: ``(B, 63)`` or ``(B, 21, 3)``.
        student_feats, teacher_feats: stage name -> ``(B, C, H, W)``.
    """
    return regression_loss(pred, target) + distillation_loss(student_feats, teacher_feats, attention_weight)


@dataclass(frozen=True)
class LossTerms:
    """The loss scales of one run: how L_REG is reduced and how L_DIST weighs its terms.

    ``regression(pred, y)`` is L_REG (Eq. 1) with ``reg_reduction``; ``distillation(s, t)`` is
    L_DIST = ``activation_weight·L_ACT + attention_weight·L_ATT`` (Eq. 4) with
    ``attention_normalization``. Phases and the meta-learner take their losses from one
    instance (built from the run config by :meth:`from_config`), so the virtual step and the
    real step optimise the same G.
    """

    reg_reduction: str = "mean"
    activation_weight: float = 1.0
    attention_weight: float = ATTENTION_WEIGHT
    attention_normalization: str = "literal"

    @classmethod
    def from_config(cls, cfg) -> "LossTerms":
        """From a :class:`training.config.TrainConfig` (``loss.reg_reduction``, ``distill.*``)."""
        return cls(reg_reduction=cfg.loss.reg_reduction, activation_weight=cfg.distill.weight_act,
                   attention_weight=cfg.distill.lambda_att, attention_normalization=cfg.distill.att_normalization)

    def regression(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return regression_loss(pred, target, self.reg_reduction)

    def distillation(self, student_feats: Mapping[str, torch.Tensor],
                     teacher_feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return distillation_loss(student_feats, teacher_feats, self.attention_weight,
                                 activation_weight=self.activation_weight,
                                 attention_normalization=self.attention_normalization)


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
