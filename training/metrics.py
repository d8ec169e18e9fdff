"""3D hand pose metrics: EPE, PCK curve, AUC and per-joint errors (`datasets.md` §6.1).

The definitions follow Zimmermann's ``EvalUtil`` (used by hand3d, FreiHAND, bihand):

- for each keypoint, the Euclidean errors of all samples in which it counts (visible,
  or all samples when no visibility is given);
- **EPE** = mean over keypoints of each keypoint's mean error (keypoints with no sample
  are skipped); **median EPE** likewise with medians;
- **PCK(t)** = per keypoint, the fraction of its errors ``≤ t``; the curve is the mean over
  keypoints;
- **AUC** = ``trapz(pck, thresholds) / (t_max − t_min)`` per keypoint, then averaged,
  with ``thresholds = linspace(t_min, t_max, steps)``.

All inputs and outputs are in millimetres here. Predictions are de-normalised with the
ground-truth root and scale before they reach these functions (`method.md` §2, §7).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.joints import MANO21

#: Threshold ranges (mm) of the two protocols (`method.md` §7).
PCK_RANGES = {"stb": (20.0, 50.0), "rhd": (0.0, 50.0)}
DEFAULT_STEPS = 20


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance per sample and joint: ``(N, J, 3), (N, J, 3) → (N, J)``."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred and gt should both be (N, J, 3), found {pred.shape} and {gt.shape}")
    return np.linalg.norm(pred - gt, axis=-1)


def _per_joint(errors: np.ndarray, visible: np.ndarray | None) -> list[np.ndarray]:
    errors = np.asarray(errors, np.float64)
    if visible is None:
        visible = np.ones(errors.shape, bool)
    visible = np.asarray(visible, bool)
    if visible.shape != errors.shape:
        raise ValueError(f"visible should have the shape of the errors {errors.shape}, found {visible.shape}")
    return [errors[visible[:, j], j] for j in range(errors.shape[1])]


def pck_thresholds(t_min: float, t_max: float, steps: int) -> np.ndarray:
    if not (t_max > t_min and steps >= 2):
        raise ValueError(f"PCK range needs t_max > t_min and at least 2 steps, found {t_min}..{t_max}, {steps}")
    return np.linspace(t_min, t_max, steps)


@dataclass
class PoseMetrics:
    """Result of :func:`compute_metrics` (all distances in mm)."""

    epe_mean: float
    epe_median: float
    per_joint_mean: list[float]  # mano21 order; NaN where a joint never counts
    thresholds: list[float]
    pck: list[float]  # mean over keypoints at each threshold
    auc: float
    num_samples: int

    def to_dict(self) -> dict:
        return {
            "epe_mean_mm": self.epe_mean,
            "epe_median_mm": self.epe_median,
            "auc": self.auc,
            "pck_range_mm": [self.thresholds[0], self.thresholds[-1]],
            "pck_steps": len(self.thresholds),
            "pck_thresholds_mm": self.thresholds,
            "pck": self.pck,
            "per_joint_epe_mm": {name: value for name, value in zip(MANO21, self.per_joint_mean)},
            "num_samples": self.num_samples,
        }


def compute_metrics(
    errors: np.ndarray,
    visible: np.ndarray | None = None,
    t_min: float = 0.0,
    t_max: float = 50.0,
    steps: int = DEFAULT_STEPS,
) -> PoseMetrics:
    """EPE, PCK curve and AUC from per-sample joint errors ``(N, J)`` in mm (`datasets.md` §6.1)."""
    thresholds = pck_thresholds(t_min, t_max, steps)
    per_joint = _per_joint(errors, visible)
    counted = [e for e in per_joint if e.size]
    if not counted:
        raise ValueError("no joint counts in any sample (empty data or nothing visible)")
    means = [float(e.mean()) if e.size else float("nan") for e in per_joint]
    pck_per_joint = np.array([[np.mean(e <= t) for t in thresholds] for e in counted])  # (J', T)
    width = thresholds[-1] - thresholds[0]
    auc_per_joint = np.trapz(pck_per_joint, thresholds, axis=1) / width
    return PoseMetrics(
        epe_mean=float(np.mean([e.mean() for e in counted])),
        epe_median=float(np.mean([np.median(e) for e in counted])),
        per_joint_mean=means,
        thresholds=[float(t) for t in thresholds],
        pck=[float(v) for v in pck_per_joint.mean(axis=0)],
        auc=float(auc_per_joint.mean()),
        num_samples=int(np.asarray(errors).shape[0]),
    )


def denormalize(pred_normalized: np.ndarray, root: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Paper protocol: ``J = ŷ · scale_gt + root_gt`` for ``(N, 21, 3)``, ``(N, 3)``, ``(N,)``."""
    pred_normalized = np.asarray(pred_normalized, np.float64)
    return pred_normalized * np.asarray(scale, np.float64)[:, None, None] + np.asarray(root, np.float64)[:, None, :]


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Each prediction mapped by the similarity transform that best fits it to its ground truth.

    Per sample, ``s, R, t = argmin Σ_j ||s·R·p_j + t − g_j||²`` with R a proper rotation
    (Umeyama, PAMI 1991: SVD of the centred cross-covariance, the last singular direction
    flipped when det < 0) — the alignment of FreiHAND's official evaluation
    (``freihand/utils/eval_util`` "aligned" errors). Shapes ``(N, J, 3), (N, J, 3) → (N, J, 3)``.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred and gt should both be (N, J, 3), found {pred.shape} and {gt.shape}")
    mu_p, mu_g = pred.mean(axis=1, keepdims=True), gt.mean(axis=1, keepdims=True)
    p, g = pred - mu_p, gt - mu_g
    cross = np.einsum("nji,njk->nik", g, p) / pred.shape[1]  # Σ_gp (N, 3, 3)
    u, singular, vt = np.linalg.svd(cross)
    d = np.ones_like(singular)
    d[:, -1] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    rotation = u @ (d[:, :, None] * vt)  # U·diag(d)·Vᵀ
    var_p = (p ** 2).sum(axis=(1, 2)) / pred.shape[1]
    scale = (singular * d).sum(axis=1) / np.maximum(var_p, 1e-30)
    return scale[:, None, None] * np.einsum("nik,njk->nji", rotation, p) + mu_g
