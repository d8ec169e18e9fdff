"""Anatomical pose distribution of the open hand and its PCA pose basis.

MANO's 45-D finger pose is one axis-angle vector per joint (15 joints, MANO16 order without
the wrist), expressed in the template frame. Each joint here has three anatomical axes
from :mod:`render.open_hand.skeleton`: flexion (``n × d``: a positive angle curls towards
the palm), sideways deviation (abduction) and twist about the bone. A joint's axis-angle
is ``θ_flex·a + θ_abd·b + θ_twist·d``, so its flexion angle is read back as ``aa · a``.

:func:`sample_anatomical_angles` draws joint angles from a synergy model (one grasp
closure shared by the fingers with per-finger and per-joint variation, DIP ≈ 0.7·PIP, a
finger spread that shrinks as the fingers close, thumb opposition = CMC flexion + palmar
abduction + pronation), clipped to :data:`LIMITS`. :func:`pca_basis` turns the
samples into MANO's ``hands_mean`` and ``hands_components``: eigenvectors of the sample
covariance ordered by variance, each row scaled by ``κ·√variance`` so that a coefficient
of ±1 is ±κ standard deviations (:data:`COMPONENT_SCALE` = κ).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from render.open_hand.skeleton import FINGER_ORDER, HandSkeleton

NUM_SAMPLES = 20000
SEED = 20240611
COMPONENT_SCALE = 0.6  # κ: PCA coefficient 1 = 0.6 standard deviations
ISOTROPIC_VARIANCE = np.deg2rad(1.5) ** 2  # keeps all 45 directions of the basis non-degenerate

#: Anatomical flexion limits (degrees) of joints 1, 2, 3 (long fingers: MCP, PIP, DIP;
#: thumb: CMC, MCP, IP). Below the lower limit a joint bends backwards (hyperextends).
LIMITS = {
    "finger": ((-30.0, 95.0), (-10.0, 115.0), (-15.0, 90.0)),
    "thumb": ((-25.0, 60.0), (-20.0, 75.0), (-25.0, 90.0)),
}


def joint_axes(skeleton: HandSkeleton) -> np.ndarray:
    """(15, 3, 3) unit axes per MANO joint 1..15: rows flexion, abduction (towards +z), twist."""
    axes = np.zeros((16, 3, 3))
    for name in FINGER_ORDER:
        f = skeleton.fingers[name]
        d = f.segment_directions()
        flex = f.flexion_axes()
        for k, j in enumerate(f.joint_ids):
            if name == "thumb":
                # Palmar abduction: motion of the bone towards −y (out of the palm plane).
                motion = np.array([0.0, -1.0, 0.0])
            else:
                motion = np.array([0.0, 0.0, 1.0])  # towards the little finger
            side = np.cross(d[k], motion - (motion @ d[k]) * d[k])
            axes[j] = [flex[k], side / np.linalg.norm(side), d[k]]
    return axes[1:]


def sample_anatomical_angles(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Joint angles in degrees: ``{digit: (n, 3, 3)}`` = [joint k][flexion, abduction, twist]."""
    closure = rng.uniform(-0.1, 1.0, n)
    spread = np.clip(rng.normal(0.0, 1.0, n), -1.8, 1.8)
    angles = {}
    spread_gain = {"index": -11.0, "middle": -2.0, "ring": 7.0, "pinky": 14.0}
    for name in FINGER_ORDER[1:]:
        c = np.clip(closure + rng.normal(0.0, 0.22, n), -0.15, 1.0)
        a = np.zeros((n, 3, 3))
        a[:, 0, 0] = 80.0 * c + rng.normal(0.0, 7.0, n)
        pip = 100.0 * np.clip(c + rng.normal(0.0, 0.15, n), 0.0, 1.0)
        a[:, 1, 0] = pip + rng.normal(0.0, 4.0, n)
        a[:, 2, 0] = 0.7 * pip + rng.normal(0.0, 6.0, n)
        a[:, 0, 1] = spread_gain[name] * spread * (1.0 - 0.6 * np.clip(c, 0, 1)) + rng.normal(0.0, 3.0, n)
        a[:, :, 2] = rng.normal(0.0, 2.0, (n, 3))
        angles[name] = a
    opposition = rng.uniform(0.0, 1.0, n)
    t = np.clip(closure + rng.normal(0.0, 0.3, n), 0.0, 1.0)
    a = np.zeros((n, 3, 3))
    a[:, 0, 0] = -5.0 + 40.0 * opposition + rng.normal(0.0, 6.0, n)
    a[:, 0, 1] = -10.0 + 35.0 * opposition + rng.normal(0.0, 6.0, n)
    a[:, 0, 2] = 25.0 * opposition + rng.normal(0.0, 5.0, n)
    a[:, 1, 0] = 45.0 * t + rng.normal(0.0, 6.0, n)
    a[:, 1, 1] = rng.normal(0.0, 4.0, n)
    a[:, 2, 0] = 60.0 * t + rng.normal(0.0, 8.0, n)
    a[:, 1:, 2] = rng.normal(0.0, 2.0, (n, 2))
    angles["thumb"] = a
    for name, a in angles.items():
        for k, (lo, hi) in enumerate(LIMITS["thumb" if name == "thumb" else "finger"]):
            a[:, k, 0] = np.clip(a[:, k, 0], lo, hi)
    return angles


def angles_to_pose(skeleton: HandSkeleton, angles: dict[str, np.ndarray]) -> np.ndarray:
    """MANO hand pose (n, 45) axis-angle from anatomical angles in degrees."""
    axes = joint_axes(skeleton)
    n = next(iter(angles.values())).shape[0]
    pose = np.zeros((n, 15, 3))
    for name, a in angles.items():
        for k, j in enumerate(skeleton.fingers[name].joint_ids):
            pose[:, j - 1] = np.deg2rad(a[:, k]) @ axes[j - 1]
    return pose.reshape(n, 45)


def flexion_angles(skeleton: HandSkeleton, hand_pose: np.ndarray) -> np.ndarray:
    """(n, 15) flexion angle in degrees of each joint (MANO order 1..15) of poses (n, 45)."""
    axes = joint_axes(skeleton)
    aa = hand_pose.reshape(-1, 15, 3)
    return np.rad2deg(np.einsum("njc,jc->nj", aa, axes[:, 0]))


def limit_violations(skeleton: HandSkeleton, hand_pose: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(n,) True where any joint flexes past its anatomical limits (by more than ``margin`` degrees)."""
    flex = flexion_angles(skeleton, hand_pose)
    lo = np.zeros(15)
    hi = np.zeros(15)
    for name in FINGER_ORDER:
        for k, j in enumerate(skeleton.fingers[name].joint_ids):
            lo[j - 1], hi[j - 1] = LIMITS["thumb" if name == "thumb" else "finger"][k]
    return np.any((flex < lo - margin) | (flex > hi + margin), axis=1)


def hyperextensions(skeleton: HandSkeleton, hand_pose: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(n,) True where any joint bends backwards past its lower flexion limit."""
    flex = flexion_angles(skeleton, hand_pose)
    lo = np.zeros(15)
    for name in FINGER_ORDER:
        for k, j in enumerate(skeleton.fingers[name].joint_ids):
            lo[j - 1] = LIMITS["thumb" if name == "thumb" else "finger"][k][0]
    return np.any(flex < lo - margin, axis=1)


#: Fixed-point resolution (radians) of the pose samples before the covariance is formed.
SAMPLE_QUANTUM = 2.0 ** -16
#: Eigenvalues closer than this fraction of the largest are one (degenerate) eigenspace.
DEGENERACY_TOLERANCE = 1e-9


def exact_covariance(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (d,), covariance (d, d))`` of samples (n, d), identical on every CPU.

    A float ``centred.T @ centred`` goes through BLAS, whose summation order (and so the last
    bits) depends on the CPU; with eigenvalue gaps of ~5e-7 that is enough to change a
    rounded eigenvector. Here the samples are snapped to integers ``q`` in units of
    :data:`SAMPLE_QUANTUM` and the sums are exact integers (int64, order-independent):
    ``cov = (n·Σqqᵀ − Σq·Σqᵀ) / (n(n − 1))``, combined in Python integers and rounded once per
    entry when it becomes a float (:class:`fractions.Fraction`).
    """
    quantised = np.round(np.asarray(samples, dtype=np.float64) / SAMPLE_QUANTUM).astype(np.int64)
    n = len(quantised)
    if n * float(np.abs(quantised).max()) ** 2 >= 2.0 ** 62:
        raise ValueError(f"exact_covariance: {n} samples of magnitude {np.abs(samples).max():.3g} overflow int64")
    products = (quantised.T @ quantised).tolist()  # integer matmul: numpy's own exact loop, no BLAS
    sums = quantised.sum(axis=0).tolist()
    denominator = n * (n - 1)
    cov = np.array([[float(Fraction(n * products[i][j] - sums[i] * sums[j], denominator)) for j in range(len(sums))]
                    for i in range(len(sums))])
    mean = np.array([float(Fraction(s, n)) for s in sums])
    return mean * SAMPLE_QUANTUM, cov * SAMPLE_QUANTUM ** 2


def canonical_eigenvectors(variances: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Eigenvectors (rows, ordered by decreasing ``variances``) made independent of LAPACK's choices.

    Inside an eigenspace of equal (to :data:`DEGENERACY_TOLERANCE`) eigenvalues any orthonormal
    basis is an answer, and ``eigh`` picks one that depends on the CPU. The canonical basis of
    such a block ``V`` (m rows) is the one that also diagonalises the fixed matrix
    ``D = diag(1, …, d)`` restricted to it: the eigenvectors ``W`` of ``V D Vᵀ`` (m × m, ascending),
    giving rows ``Wᵀ V`` — unique when those m Rayleigh values differ, which holds for the open
    hand (its null directions lie in distinct joints' coordinates). Then every row's
    largest-magnitude entry is made positive (fixes the sign).
    """
    vectors = vectors.copy()
    scale = max(abs(float(variances[0])), 1e-300)
    start = 0
    while start < len(variances):
        stop = start + 1
        while stop < len(variances) and abs(variances[stop] - variances[start]) <= DEGENERACY_TOLERANCE * scale:
            stop += 1
        if stop - start > 1:
            block = vectors[start:stop]
            ranking = np.diag(np.arange(1.0, block.shape[1] + 1.0))
            _, mixing = np.linalg.eigh(block @ ranking @ block.T)
            vectors[start:stop] = mixing.T @ block
        start = stop
    signs = np.sign(vectors[np.arange(len(vectors)), np.argmax(np.abs(vectors), axis=1)])
    return vectors * signs[:, None]


def pca_basis(samples: np.ndarray, scale: float = COMPONENT_SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hands_mean (45,), hands_components (45, 45), variances (45,))`` of pose samples (n, 45).

    Rows of ``hands_components`` are eigenvectors of the covariance (plus
    :data:`ISOTROPIC_VARIANCE`) ordered by decreasing variance, scaled by ``scale·√variance``.
    The covariance is exact (:func:`exact_covariance`) and the basis canonical
    (:func:`canonical_eigenvectors`), so a rebuild gives the same file on every CPU.
    """
    mean, cov = exact_covariance(samples)
    cov = cov + ISOTROPIC_VARIANCE * np.eye(samples.shape[1])
    variances, vectors = np.linalg.eigh(cov)
    order = np.argsort(variances)[::-1]
    variances, vectors = variances[order], canonical_eigenvectors(variances[order], vectors[:, order].T)
    return mean, vectors * (scale * np.sqrt(variances))[:, None], variances


def build_pose_space(skeleton: HandSkeleton) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``hands_mean``, ``hands_components``, variances from :data:`NUM_SAMPLES` seeded samples."""
    rng = np.random.default_rng(SEED)
    samples = angles_to_pose(skeleton, sample_anatomical_angles(rng, NUM_SAMPLES))
    return pca_basis(samples)
