"""The embedded open hand and the HandModel layer: format, anatomy, units, skinning, determinism."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import smplx
import torch

from datasets.joints import BONES, MANO21, index
from render.hand_model import EMBEDDED_MODEL, HandModel
from render.mano_io import load_mano_npz
from render.open_hand import pose_prior
from render.open_hand.build import build_open_hand, write_open_hand
from render.open_hand.skeleton import FINGER_ORDER, build_skeleton
from render.open_hand.surface import check_closed_manifold, edges_of

FINGERS = ("thumb", "index", "middle", "ring", "pinky")


@pytest.fixture(scope="module")
def model():
    return HandModel()


@pytest.fixture(scope="module")
def data():
    return load_mano_npz(EMBEDDED_MODEL)


def flat_pose_coefficients(model_45: HandModel) -> np.ndarray:
    """The 45 PCA coefficients that cancel the mean: the flat template pose."""
    return -model_45._mean @ np.linalg.inv(model_45._components)


@pytest.fixture(scope="module")
def flat_joints():
    m45 = HandModel(num_pca_comps=45)
    out = m45(flat_pose_coefficients(m45)[None], np.zeros((1, 10)))
    np.testing.assert_allclose(out.hand_pose, 0.0, atol=1e-5)
    return out.joints[0].astype(np.float64)


def test_smplx_loads_the_embedded_file_unchanged(model):
    layer = smplx.MANO(str(EMBEDDED_MODEL.parent), ext="npz", use_pca=True, num_pca_comps=10,
                       flat_hand_mean=False, is_rhand=True)
    rng = np.random.default_rng(0)
    pose, betas, orient = rng.uniform(-2, 2, (3, 10)), rng.uniform(-1, 1, (3, 10)), rng.normal(0, 1, (3, 3))
    with torch.no_grad():
        ref = layer(hand_pose=torch.tensor(pose, dtype=torch.float32), betas=torch.tensor(betas, dtype=torch.float32),
                    global_orient=torch.tensor(orient, dtype=torch.float32), transl=torch.zeros(3, 3))
    ours = model(pose, betas, orient)
    np.testing.assert_allclose(ours.vertices, ref.vertices.numpy(), atol=1e-6)
    tips = ref.vertices[:, list(model.tip_vertex_ids.values())].numpy()
    np.testing.assert_allclose(ours.joints[:, [index(f"{f}_tip") for f in FINGERS]], tips, atol=1e-6)
    np.testing.assert_allclose(ours.joints[:, index("index_mcp")], ref.joints[:, 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.joints[:, index("thumb_mcp")], ref.joints[:, 13].numpy(), atol=1e-6)


def test_outputs_shapes_dtypes_and_applied_pose(model, data):
    rng = np.random.default_rng(1)
    pose = rng.uniform(-2, 2, (5, 10))
    out = model(pose, np.zeros((5, 10)))
    assert out.vertices.shape == (5, model.num_vertices, 3) and out.vertices.dtype == np.float32
    assert out.joints.shape == (5, 21, 3) and out.joints.dtype == np.float32
    assert out.hand_pose.shape == (5, 45) and out.hand_pose.dtype == np.float32
    np.testing.assert_allclose(out.hand_pose, pose @ data["hands_components"][:10] + data["hands_mean"], atol=1e-6)
    assert model.faces.dtype == np.int32 and model.faces.max() == model.num_vertices - 1
    assert model.identity == f"open-hand v{int(data['open_hand_version'])} (sha256:{hashlib.sha256(EMBEDDED_MODEL.read_bytes()).hexdigest()[:16]})"


@pytest.mark.parametrize("args, name", [
    ((np.zeros((2, 9)), np.zeros((2, 10))), "pose_pca"),
    ((np.zeros((2, 10)), np.zeros((3, 10))), "betas"),
    ((np.zeros((2, 10)), np.zeros((2, 10)), np.zeros((2, 4))), "global_orient"),
])
def test_bad_shapes_are_named(model, args, name):
    with pytest.raises(ValueError, match=name):
        model(*args)


def test_mano21_order_by_anatomy_in_the_flat_pose(flat_joints):
    skeleton = build_skeleton()
    j = flat_joints
    wrist = j[index("wrist")]
    for finger in FINGERS:
        chain = [index(f"{finger}_{k}") for k in ("mcp", "pip", "dip", "tip")]
        # Along the finger, each joint is farther from the wrist than the previous one ...
        distances = np.linalg.norm(j[chain] - wrist, axis=1)
        assert np.all(np.diff(distances) > 0.01), finger
        # ... consecutive joints are the designed bone lengths apart ...
        spec = skeleton.fingers[finger]
        design = np.linalg.norm(np.diff(np.vstack([spec.points[:3], skeleton.fingertips[FINGER_ORDER.index(finger)]]),
                                        axis=0), axis=1)
        np.testing.assert_allclose(np.linalg.norm(np.diff(j[chain], axis=0), axis=1), design, atol=1e-3)
        # ... and a straight flat finger keeps its direction (bones nearly parallel).
        bones = np.diff(j[chain], axis=0)
        bones /= np.linalg.norm(bones, axis=1, keepdims=True)
        assert np.all(np.sum(bones[1:] * bones[:-1], axis=1) > np.cos(np.deg2rad(20))), finger
    # Every named bone of the skeleton is a plausible bone (1.5–6 cm, wrist→MCP up to 10 cm).
    for a, b in BONES:
        length = np.linalg.norm(j[index(b)] - j[index(a)])
        assert 0.015 < length < (0.10 if a == "wrist" else 0.06), (a, b, length)
    # The MCPs lie across the palm in the order index, middle, ring, pinky.
    mcps = j[[index(f"{f}_mcp") for f in FINGERS[1:]]]
    across = mcps[-1] - mcps[0]
    assert np.all(np.diff((mcps - mcps[0]) @ across) > 0)


def test_units_are_metres_with_adult_hand_length(flat_joints):
    length = np.linalg.norm(flat_joints[index("middle_tip")] - flat_joints[index("wrist")])
    assert 0.17 <= length <= 0.20
    palm = np.linalg.norm(flat_joints[index("index_mcp")] - flat_joints[index("pinky_mcp")])
    assert 0.05 <= palm <= 0.08


def test_right_hand_fingers_curl_towards_the_palm_side_and_thumb_is_radial(model, flat_joints):
    mean = model(np.zeros((1, 10)), np.zeros((1, 10))).joints[0].astype(np.float64)
    j = flat_joints
    wrist = j[index("wrist")]
    # For a right hand, (index MCP − wrist) × (little MCP − wrist) points out of the palm.
    palm_normal = np.cross(j[index("index_mcp")] - wrist, j[index("pinky_mcp")] - wrist)
    palm_normal /= np.linalg.norm(palm_normal)
    for finger in FINGERS[1:]:
        curl = mean[index(f"{finger}_tip")] - j[index(f"{finger}_tip")]
        assert curl @ palm_normal > 0.01, finger  # the relaxed mean pose curls towards the palm
    # The thumb sits beyond the index finger, on the side away from the little finger.
    radial = j[index("index_mcp")] - j[index("pinky_mcp")]
    radial /= np.linalg.norm(radial)
    for joint in ("thumb_pip", "thumb_dip", "thumb_tip"):
        assert (j[index(joint)] - j[index("index_mcp")]) @ radial > 0.01


def test_global_orient_rotates_about_the_wrist(model):
    rng = np.random.default_rng(2)
    pose, betas = rng.uniform(-2, 2, (1, 10)), rng.uniform(-1, 1, (1, 10))
    axis_angle = np.array([[0.3, -1.1, 0.7]])
    rot = smplx.lbs.batch_rodrigues(torch.tensor(axis_angle, dtype=torch.float32))[0].numpy()
    still = model(pose, betas).joints[0]
    turned = model(pose, betas, axis_angle).joints[0]
    root = still[0]
    np.testing.assert_allclose(turned - turned[0], (still - root) @ rot.T, atol=1e-5)


def test_surface_is_closed_and_oriented_outwards(data):
    faces = data["f"].astype(np.int64)
    check_closed_manifold(faces, len(data["v_template"]))
    v = data["v_template"].astype(np.float64)
    volume = np.einsum("ij,ij->i", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])).sum() / 6
    assert 2.0e-4 < volume < 6.0e-4  # m³: 200–600 ml, an adult hand and wrist stub
    assert 1000 <= len(v) <= 2500


def test_rig_arrays_are_consistent(data):
    skeleton = build_skeleton()
    np.testing.assert_allclose(data["J_regressor"] @ data["v_template"], skeleton.joints, atol=2e-6)
    np.testing.assert_allclose(data["J_regressor"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(data["weights"].sum(axis=1), 1.0, atol=1e-5)
    assert data["weights"].min() >= 0
    np.testing.assert_array_equal(data["kintree_table"][0, 1:], [0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])


def _edge_stretch(rest: np.ndarray, posed: np.ndarray, edges: np.ndarray) -> np.ndarray:
    length = lambda v: np.linalg.norm(v[..., edges[:, 0], :] - v[..., edges[:, 1], :], axis=-1)  # noqa: E731
    return length(posed) / length(rest)


def test_skinning_bends_without_tearing(model, data):
    edges = edges_of(data["f"].astype(np.int64))
    rest = HandModel(num_pca_comps=45)
    flat = rest(flat_pose_coefficients(rest)[None], np.zeros((1, 10))).vertices[0]
    rng = np.random.default_rng(4)
    posed = model(rng.uniform(-2, 2, (64, 10)), np.zeros((64, 10))).vertices
    ratio = _edge_stretch(flat, posed, edges)
    assert ratio.max() < 2.2 and ratio.min() > 0.05
    # A strong fist (all finger joints 80–95 degrees): skin stretches over the knuckles but stays joined.
    skeleton = build_skeleton()
    angles = {name: np.zeros((1, 3, 3)) for name in FINGER_ORDER}
    for name in FINGER_ORDER[1:]:
        angles[name][0, :, 0] = (85.0, 95.0, 80.0)
    angles["thumb"][0, :, 0] = (30.0, 50.0, 60.0)
    fist_pose = pose_prior.angles_to_pose(skeleton, angles)
    coefficients = np.linalg.solve(rest._components.T.astype(np.float64), fist_pose[0] - rest._mean)
    fist = rest(coefficients[None], np.zeros((1, 10)))
    np.testing.assert_allclose(fist.hand_pose[0], fist_pose[0], atol=1e-4)
    ratio = _edge_stretch(flat, fist.vertices[0], edges)
    assert ratio.max() < 2.2 and ratio.min() > 0.03  # palm-side skin folds, nothing tears
    # Fingertips end up near the palm, below the knuckles.
    j = fist.joints[0]
    for finger in FINGERS[1:]:
        assert np.linalg.norm(j[index(f"{finger}_tip")] - j[index("wrist")]) < \
            np.linalg.norm(j[index(f"{finger}_pip")] - j[index("wrist")])


def test_shape_directions_are_plausible(model, flat_joints):
    m45 = HandModel(num_pca_comps=45)
    flat = flat_pose_coefficients(m45)[None]
    base = np.linalg.norm(flat_joints[index("middle_tip")] - flat_joints[0])
    bigger = m45(flat, np.eye(10)[:1]).joints[0]
    assert np.linalg.norm(bigger[index("middle_tip")] - bigger[0]) / base == pytest.approx(1.06, abs=0.005)
    for sign in (-1.0, 1.0):
        out = m45(np.repeat(flat, 10, axis=0), sign * np.eye(10))
        length = np.linalg.norm(out.joints[:, index("middle_tip")] - out.joints[:, 0], axis=1)
        assert np.all((length > 0.16) & (length < 0.21))
        assert np.all(np.abs(out.vertices - m45(flat, np.zeros((1, 10))).vertices).max(axis=(1, 2)) > 1e-3)


def test_pca_prior_rarely_bends_joints_backwards(data):
    skeleton = build_skeleton()
    rng = np.random.default_rng(5)
    coefficients = rng.uniform(-2, 2, (4000, 10))
    poses = coefficients @ data["hands_components"][:10].astype(np.float64) + data["hands_mean"]
    assert pose_prior.hyperextensions(skeleton, poses).mean() < 0.03
    assert pose_prior.limit_violations(skeleton, poses).mean() < 0.03
    # The basis is ordered by variance and spans all 45 directions.
    norms = np.linalg.norm(data["hands_components"], axis=1)
    assert np.all(np.diff(norms) <= 1e-6) and norms[-1] > 0
    # The first component is the grasp: positive coefficients flex every long-finger joint one way.
    flex = pose_prior.flexion_angles(skeleton, data["hands_components"][:1].astype(np.float64))[0]
    long_fingers = [j - 1 for name in FINGER_ORDER[1:] for j in skeleton.fingers[name].joint_ids]
    assert np.all(np.sign(flex[long_fingers]) == np.sign(flex[long_fingers][0]))


def test_committed_model_equals_a_rebuild(tmp_path, data):
    rebuilt = build_open_hand()
    assert sorted(rebuilt) == sorted(data)
    for key in data:
        assert rebuilt[key].dtype == data[key].dtype, key
        np.testing.assert_array_equal(rebuilt[key], data[key], err_msg=key)
    path = write_open_hand(tmp_path / "MANO_RIGHT.npz")
    assert path.read_bytes() == EMBEDDED_MODEL.read_bytes()


def test_tips_are_the_distal_surface_points(data, flat_joints):
    tips = data["tip_vertex_ids"]
    assert len(set(tips.tolist())) == 5
    for finger, vid in zip(FINGERS, tips):
        assert np.allclose(flat_joints[MANO21.index(f"{finger}_tip")], data["v_template"][vid], atol=1e-5)


def _pose_samples() -> np.ndarray:
    """The samples the embedded model's pose space is built from."""
    rng = np.random.default_rng(pose_prior.SEED)
    return pose_prior.angles_to_pose(build_skeleton(), pose_prior.sample_anatomical_angles(rng, pose_prior.NUM_SAMPLES))


def test_covariance_is_independent_of_the_summation_order():
    """Another CPU's BLAS sums in another order; the exact covariance does not depend on it."""
    samples = _pose_samples()
    mean, cov = pose_prior.exact_covariance(samples)
    permuted = samples[np.random.default_rng(1).permutation(len(samples))]
    mean_p, cov_p = pose_prior.exact_covariance(permuted)
    assert mean.tobytes() == mean_p.tobytes() and cov.tobytes() == cov_p.tobytes()
    # and it is the covariance, up to the snapping of each sample by at most half a quantum
    bound = 2 * np.abs(samples - samples.mean(axis=0)).max() * pose_prior.SAMPLE_QUANTUM
    np.testing.assert_allclose(cov, np.cov(samples, rowvar=False), rtol=0, atol=bound)
    np.testing.assert_allclose(mean, samples.mean(axis=0), rtol=0, atol=pose_prior.SAMPLE_QUANTUM)


def test_basis_of_a_degenerate_eigenspace_is_canonical_whatever_lapack_returns():
    """The pose covariance has a 9-fold eigenvalue (directions the sampler never moves);
    any rotation of eigh's basis inside it, as another LAPACK may return, gives the same rows."""
    samples = _pose_samples()
    _, cov = pose_prior.exact_covariance(samples)
    cov = cov + pose_prior.ISOTROPIC_VARIANCE * np.eye(45)
    variances, vectors = np.linalg.eigh(cov)
    order = np.argsort(variances)[::-1]
    variances, rows = variances[order], vectors[:, order].T
    degenerate = np.flatnonzero(np.abs(variances - pose_prior.ISOTROPIC_VARIANCE)
                                < pose_prior.DEGENERACY_TOLERANCE * variances[0])
    assert len(degenerate) == 9
    reference = pose_prior.canonical_eigenvectors(variances, rows)
    rng = np.random.default_rng(3)
    for _ in range(3):
        rotation, _ = np.linalg.qr(rng.normal(size=(9, 9)))
        other = rows.copy()
        other[degenerate] = rotation @ rows[degenerate]
        other *= rng.choice([-1.0, 1.0], size=(45, 1))  # eigh's signs are arbitrary too
        np.testing.assert_allclose(pose_prior.canonical_eigenvectors(variances, other), reference, atol=1e-12)
    # still an orthonormal eigenbasis of the covariance
    np.testing.assert_allclose(reference @ reference.T, np.eye(45), atol=1e-12)
    np.testing.assert_allclose(reference @ cov @ reference.T, np.diag(variances), atol=1e-10)
