"""EPE / PCK / AUC / per-joint errors against values computed by hand (datasets.md §6.1)."""
import numpy as np
import pytest

from datasets.joints import MANO21
from training.metrics import compute_metrics, denormalize, joint_errors


def _errors_along_x(distances_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions displaced from the ground truth by the given distances (N, 21) along x."""
    gt = np.random.default_rng(0).normal(size=distances_mm.shape + (3,)) * 50
    pred = gt.copy()
    pred[..., 0] += distances_mm
    return pred, gt


def test_joint_errors_are_euclidean():
    gt = np.zeros((1, 21, 3))
    pred = np.zeros((1, 21, 3))
    pred[0, 3] = (3.0, 4.0, 0.0)  # a 3-4-5 triangle
    pred[0, 7] = (1.0, 2.0, 2.0)  # length 3
    errors = joint_errors(pred, gt)
    assert errors[0, 3] == pytest.approx(5.0) and errors[0, 7] == pytest.approx(3.0)
    assert errors.sum() == pytest.approx(8.0)
    with pytest.raises(ValueError, match=r"\(N, J, 3\)"):
        joint_errors(np.zeros((2, 21, 2)), np.zeros((2, 21, 2)))


def test_epe_pck_auc_by_hand():
    # two samples; every joint errs by 9 mm in sample 0 and 29 mm in sample 1,
    # except joint 0, which errs by 0 and 49 mm (off the thresholds, so rounding cannot flip a count).
    d = np.full((2, 21), 9.0)
    d[1] = 29.0
    d[:, 0] = (0.0, 49.0)
    pred, gt = _errors_along_x(d)
    m = compute_metrics(joint_errors(pred, gt), t_min=0.0, t_max=50.0, steps=6)  # 0,10,...,50 mm
    assert m.epe_mean == pytest.approx((24.5 + 20 * 19.0) / 21)
    assert m.epe_median == pytest.approx((24.5 + 20 * 19.0) / 21)  # median of two = their mean
    assert m.per_joint_mean[0] == pytest.approx(24.5) and m.per_joint_mean[5] == pytest.approx(19.0)
    # PCK per joint at 0,10,...,50: joint 0: [.5,.5,.5,.5,.5,1]; others: [0,.5,.5,1,1,1]
    joint0 = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 1.0])
    others = np.array([0.0, 0.5, 0.5, 1.0, 1.0, 1.0])
    assert m.pck == pytest.approx(list((joint0 + 20 * others) / 21))
    # trapezoids of width 10 over a 50 mm range: joint 0: (5*4 + 7.5)/50, others: (2.5 + 5 + 7.5 + 10 + 10)/50
    auc0 = 27.5 / 50
    auc_other = 35.0 / 50
    assert m.auc == pytest.approx((auc0 + 20 * auc_other) / 21)
    assert m.thresholds == pytest.approx([0, 10, 20, 30, 40, 50])


def test_stb_range_and_pck_counts_equality_as_within():
    d = np.full((4, 21), 20.0)  # exactly on the first threshold
    d[2:] = 60.0  # beyond the range
    m = compute_metrics(d, t_min=20.0, t_max=50.0, steps=4)
    assert m.pck == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert m.auc == pytest.approx(0.5)
    assert m.to_dict()["pck_range_mm"] == [20.0, 50.0] and m.to_dict()["pck_steps"] == 4


def test_visibility_mask_and_per_keypoint_averaging():
    # joint 1 is visible in one sample only: per-keypoint means are averaged, not all distances pooled
    d = np.zeros((3, 21))
    d[:, 1] = (90.0, 0.0, 0.0)
    visible = np.ones((3, 21), bool)
    visible[1:, 1] = False
    m = compute_metrics(d, visible, steps=11)
    assert m.per_joint_mean[1] == pytest.approx(90.0)
    assert m.epe_mean == pytest.approx(90.0 / 21)
    # a joint never visible is skipped (NaN per joint, not counted in the mean)
    visible[:, 2] = False
    m = compute_metrics(d, visible, steps=11)
    assert np.isnan(m.per_joint_mean[2])
    assert m.epe_mean == pytest.approx(90.0 / 20)
    assert list(m.to_dict()["per_joint_epe_mm"]) == list(MANO21)
    with pytest.raises(ValueError, match="no joint counts"):
        compute_metrics(d, np.zeros_like(visible))
    with pytest.raises(ValueError, match="t_max > t_min"):
        compute_metrics(d, t_min=50, t_max=20)


def test_denormalize_inverts_the_target_normalisation():
    rng = np.random.default_rng(1)
    joints = rng.normal(size=(5, 21, 3))
    root = joints[:, 0]
    scale = np.linalg.norm(joints[:, MANO21.index("middle_pip")] - joints[:, MANO21.index("middle_mcp")], axis=-1)
    target = (joints - root[:, None]) / scale[:, None, None]
    np.testing.assert_allclose(denormalize(target, root, scale), joints, atol=1e-12)


def test_procrustes_alignment_undoes_a_similarity_transform():
    from scipy.spatial.transform import Rotation

    from training.metrics import procrustes_align

    rng = np.random.default_rng(0)
    gt = rng.normal(size=(3, 21, 3))
    rotations = Rotation.random(3, random_state=1).as_matrix()
    pred = 0.7 * np.einsum("nik,njk->nji", rotations, gt) + np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-10)


def test_procrustes_alignment_of_a_hand_computed_case():
    # gt: the unit square in z = 0; pred: the square of side 2, shifted, two opposite corners
    # lifted by 1. Centred, pred is (±1, ±1, ±0.5) and gt (±0.5, ±0.5, 0); their cross-covariance
    # is diag(0.5, 0.5, 0), so R = I, and s = (0.5 + 0.5) / (Σ|p|²/4 = 2.25) = 4/9.
    from training.metrics import procrustes_align

    gt = np.array([[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]], float)
    pred = 2 * gt + np.array([5.0, 5.0, 5.0])
    pred[0, [0, 2], 2] += 1.0
    expected = np.empty_like(gt)
    expected[0, :, :2] = 0.5 + (8 / 9) * (gt[0, :, :2] - 0.5)
    expected[0, :, 2] = (4 / 9) * np.array([0.5, -0.5, 0.5, -0.5])
    np.testing.assert_allclose(procrustes_align(pred, gt), expected, atol=1e-12)


def test_procrustes_alignment_does_not_mirror():
    from training.metrics import procrustes_align

    gt = np.random.default_rng(2).normal(size=(1, 21, 3))
    mirrored = gt * np.array([1.0, 1.0, -1.0])  # a left hand for a right one
    residual = np.linalg.norm(procrustes_align(mirrored, gt) - gt, axis=-1).mean()
    assert residual > 0.1  # a reflection would fit exactly; a proper rotation cannot
