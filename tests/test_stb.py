"""Raw STB reader (`datasets/stb.py`) against the fixture of `tests/raw_fixtures.py`."""
import shutil

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from datasets.conventions import STB_TO_MANO21_PALM_ROOT, palm_to_wrist
from datasets.errors import DatasetError
from datasets.geometry import project
from datasets.images import encode_stb_depth, read_stb_depth
from datasets.stb import (STB_K, STB_SEQUENCES, STB_SK_R, STBDataset, fill_one_pixel_holes, load_stb_labels,
                          register_sk_depth, rodrigues, sk_color_to_depth, sk_depth_to_color)
from tests.raw_fixtures import handedness, stb_image_code, stb_rotation, write_stb

# datasets.md §2.4: the quaternion-form SK_rot_mx of hand-graph-cnn / bihand.
PUBLISHED_SK_R = np.array([[0.99992395, -0.00304166, -0.01195165],
                           [0.00297816, 0.99998137, -0.00532784],
                           [0.01196763, 0.00529184, 0.99991438]])
FRAMES = 2


@pytest.fixture(scope="module")
def stb(tmp_path_factory):
    return write_stb(tmp_path_factory.mktemp("stb"), frames=FRAMES)


def _rgb_code(sample):
    return tuple((sample["rgb"][:, 0, 0] * 255).round().int().tolist())


def test_standard_split_and_frame_count_from_the_labels(stb):
    assert len(STBDataset(stb.root, split="train")) == 10 * FRAMES
    test = STBDataset(stb.root, split="test")
    assert len(test) == 2 * FRAMES
    assert test.sequences == ("B1Counting", "B1Random")
    everything = STBDataset(stb.root, split="all")
    assert everything.sequences == STB_SEQUENCES and len(everything) == 12 * FRAMES
    picked = STBDataset(stb.root, sequences=["B3Random"])
    assert len(picked) == FRAMES and _rgb_code(picked[1]) == stb_image_code("B3Random", 1, "SK_color")


def test_sk_colour_samples_match_the_colour_camera_hand(stb):
    data = STBDataset(stb.root, split="test")
    for i in range(len(data)):
        seq, frame = data.sequences[i // FRAMES], i % FRAMES
        sample = data[i]
        assert _rgb_code(sample) == stb_image_code(seq, frame, "SK_color")
        assert sample["rgb"].shape == (3, 480, 640) and "depth" not in sample
        # the fixture's palm is (wrist + ring_mcp)/2, so the default "ring" rule recovers the wrist exactly
        np.testing.assert_allclose(sample["joints3d"].numpy(), stb.color_joints[seq][frame], atol=1e-6)
        np.testing.assert_allclose(sample["K"].numpy(), STB_K["sk_color"], rtol=1e-7)
        np.testing.assert_allclose(project(sample["joints3d"].numpy(), sample["K"].numpy()),
                                   sample["joints2d"].numpy(), atol=1e-3)
        assert bool(sample["is_left"]) and handedness(sample["joints3d"].numpy()) == -1.0
        assert sample["visible"].all() and sample["index"] == i


def test_bumblebee_cameras_use_bb_labels_intrinsics_and_baseline(stb):
    left = STBDataset(stb.root, split="test", camera="bb_left")
    right = STBDataset(stb.root, split="test", camera="bb_right")
    truth = stb.bb_joints["B1Counting"][1]
    a, b = left[1], right[1]
    assert _rgb_code(a) == stb_image_code("B1Counting", 1, "BB_left")
    assert _rgb_code(b) == stb_image_code("B1Counting", 1, "BB_right")
    np.testing.assert_allclose(a["joints3d"].numpy(), truth, atol=1e-6)
    np.testing.assert_allclose(b["joints3d"].numpy(), truth - [0.120054, 0, 0], atol=1e-6)
    for sample in (a, b):
        np.testing.assert_allclose(sample["K"].numpy(), STB_K["bb"], rtol=1e-7)
        np.testing.assert_allclose(project(sample["joints3d"].numpy(), sample["K"].numpy()),
                                   sample["joints2d"].numpy(), atol=1e-3)
    # a rectified stereo pair: same rows, disparity fx·b/z
    np.testing.assert_allclose(a["joints2d"][:, 1].numpy(), b["joints2d"][:, 1].numpy(), atol=1e-3)
    disparity = 822.79041 * 0.120054 / truth[:, 2]
    np.testing.assert_allclose((a["joints2d"][:, 0] - b["joints2d"][:, 0]).numpy(), disparity, rtol=1e-4)


@pytest.mark.parametrize("rule", ["middle", "mean_mcp"])
def test_other_palm_rules_apply_their_formula_to_the_labelled_palm(stb, rule):
    sample = STBDataset(stb.root, split="test", palm_to_wrist=rule)[0]
    stb_joints = load_stb_labels(stb.root / "labels" / "B1Counting_SK.mat")[0]
    with_palm = sk_depth_to_color(stb_joints)[STB_TO_MANO21_PALM_ROOT]
    np.testing.assert_allclose(sample["joints3d"].numpy(), palm_to_wrist(with_palm, rule), atol=1e-6)
    truth = stb.color_joints["B1Counting"][0]
    np.testing.assert_allclose(sample["joints3d"][1:].numpy(), truth[1:], atol=1e-6)  # only the root moves
    assert np.linalg.norm(sample["joints3d"][0].numpy() - truth[0]) > 1e-4


def test_mirror_gives_right_hands_with_the_invariant(stb):
    plain, mirrored = STBDataset(stb.root, split="test"), STBDataset(stb.root, split="test", mirror=True)
    a, b = plain[2], mirrored[2]
    assert not bool(b["is_left"]) and handedness(b["joints3d"].numpy()) == 1.0
    np.testing.assert_allclose(project(b["joints3d"].numpy(), b["K"].numpy()), b["joints2d"].numpy(), atol=1e-3)
    assert torch.equal(b["rgb"], torch.flip(a["rgb"], dims=[-1]))
    np.testing.assert_allclose(b["joints2d"][:, 0].numpy(), 639 - a["joints2d"][:, 0].numpy(), atol=1e-3)


def test_rodrigues_matches_the_published_matrix_and_scipy():
    np.testing.assert_allclose(STB_SK_R, PUBLISHED_SK_R, atol=1e-7)
    np.testing.assert_allclose(STB_SK_R, stb_rotation(), atol=1e-12)
    np.testing.assert_allclose(STB_SK_R @ STB_SK_R.T, np.eye(3), atol=1e-12)
    # 90° about z sends x to y
    np.testing.assert_allclose(rodrigues([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_array_equal(rodrigues([0, 0, 0]), np.eye(3))


def test_depth_to_colour_transform_round_trips_and_inverts_the_extrinsics():
    points = np.random.default_rng(0).uniform(-0.3, 0.6, size=(10, 3))
    np.testing.assert_allclose(sk_depth_to_color(sk_color_to_depth(points)), points, atol=1e-12)
    # X_d = R X_c + T with T in mm (datasets.md §2.4): the colour origin sits at T in depth coordinates
    np.testing.assert_allclose(sk_color_to_depth(np.zeros(3)), [-0.0240381, -0.0004563, -0.0012326], atol=1e-12)
    x_c = np.array([0.1, -0.05, 0.5])
    np.testing.assert_allclose(sk_color_to_depth(x_c), PUBLISHED_SK_R @ x_c + [-0.0240381, -0.0004563, -0.0012326],
                               atol=1e-8)


def test_sk_depth_png_decodes_to_metres(stb, tmp_path):
    decoded = read_stb_depth(stb.root / "images" / "B2Random" / "SK_depth_1.png")
    np.testing.assert_allclose(decoded, stb.sk_depth["B2Random"][1], atol=0.5e-3 + 1e-7)
    image = np.zeros((480, 640, 3), np.uint8)
    image[0, 0] = (1, 2, 0)  # depth = R + 256·G = 513 mm
    Image.fromarray(image).save(tmp_path / "d.png")
    assert read_stb_depth(tmp_path / "d.png")[0, 0] == pytest.approx(0.513)


# ---------------------------------------------------------------- bad input
@pytest.fixture
def stb_copy(stb, tmp_path):
    root = tmp_path / "stb"
    shutil.copytree(stb.root, root)
    return root


def test_missing_directories_and_label_files(stb_copy, tmp_path):
    with pytest.raises(DatasetError, match="nowhere: STB root directory not found"):
        STBDataset(tmp_path / "nowhere")
    (stb_copy / "labels" / "B1Random_SK.mat").unlink()
    with pytest.raises(DatasetError, match="B1Random_SK.mat: STB label file not found"):
        STBDataset(stb_copy, split="test")
    shutil.rmtree(stb_copy / "images" / "B2Counting")
    with pytest.raises(DatasetError, match="B2Counting: STB image directory"):
        STBDataset(stb_copy, split="train")
    with pytest.raises(ValueError, match="B7Counting"):
        STBDataset(stb_copy, sequences=["B7Counting"])
    with pytest.raises(ValueError, match="palm_to_wrist"):
        STBDataset(stb_copy, palm_to_wrist="wrist")


@pytest.mark.parametrize("content, message", [
    ({"handPara": np.zeros((21, 3, 2))}, r"shape \(3, 21, frames\), found \(21, 3, 2\)"),
    ({"joints": np.zeros((3, 21, 2))}, r"expected a variable 'handPara', found \['joints'\]"),
    ({"handPara": np.full((3, 21, 2), np.nan)}, "NaN or inf"),
])
def test_malformed_label_files_name_the_file(stb_copy, content, message):
    scipy.io.savemat(stb_copy / "labels" / "B1Counting_SK.mat", content)
    with pytest.raises(DatasetError, match=f"B1Counting_SK.mat.*{message}"):
        STBDataset(stb_copy, split="test")


def test_corrupt_label_file_and_images(stb_copy):
    (stb_copy / "labels" / "B1Counting_BB.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="B1Counting_BB.mat: unreadable MATLAB file"):
        STBDataset(stb_copy, split="test", camera="bb_left")
    data = STBDataset(stb_copy, split="test")
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(stb_copy / "images" / "B1Counting" / "SK_color_0.png")
    with pytest.raises(DatasetError, match=r"SK_color_0.png: expected an image of 640×480.*found 320×240"):
        data[0]
    Image.fromarray(np.zeros((480, 640), np.uint8)).save(stb_copy / "images" / "B1Counting" / "SK_color_1.png")
    with pytest.raises(DatasetError, match=r"SK_color_1.png: expected a 3-channel colour image.*mode L"):
        data[1]


def test_fewer_frames_in_a_sequence_are_read_from_the_mat(stb_copy):
    labels = scipy.io.loadmat(stb_copy / "labels" / "B1Random_SK.mat")["handPara"]
    scipy.io.savemat(stb_copy / "labels" / "B1Random_SK.mat", {"handPara": labels[:, :, :1]})
    data = STBDataset(stb_copy, split="test")
    assert len(data) == FRAMES + 1
    assert data.image_path(FRAMES).name == "SK_color_0.png" and data.image_path(FRAMES).parent.name == "B1Random"


# ---------------------------------------------------------------- depth registered into the colour image
def _depth_pixel_rays():
    v, u = np.mgrid[0:480, 0:640].astype(np.float64)
    K = STB_K["sk_depth"]
    return (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]


def _back_to_depth_camera(registered):
    """Each registered colour pixel (u, v, z) → its 3D point in depth-camera coordinates and depth pixel."""
    v, u = np.nonzero(registered > 0)
    z = registered[v, u].astype(np.float64)
    K = STB_K["sk_color"]
    colour = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    points = sk_color_to_depth(colour)
    uv_d = (points @ STB_K["sk_depth"].T)[:, :2] / points[:, 2:]
    return points, uv_d


@pytest.mark.parametrize("fill_holes", [False, True])
def test_registered_plane_maps_back_onto_depth_pixels_of_the_same_depth(fill_holes):
    x, y = _depth_pixel_rays()
    plane = np.round(0.5 / (1.0 - 0.2 * x - 0.1 * y) * 1000.0) / 1000.0  # z = 0.5 + 0.2·X + 0.1·Y, mm steps
    registered = register_sk_depth(plane, fill_holes=fill_holes)
    assert registered.shape == (480, 640) and registered.dtype == np.float32
    points, uv_d = _back_to_depth_camera(registered)
    # each colour pixel lies in the footprint of the depth pixel it came from: that pixel is within
    # half a depth pixel (per axis) of where the colour pixel maps back, and has the same depth
    base = np.floor(uv_d).astype(int)
    error = np.full(len(points), np.inf)
    for offset in ((0, 0), (0, 1), (1, 0), (1, 1)):
        pixel = base + offset
        inside = (np.abs(pixel - uv_d) <= 0.52).all(axis=1) & (pixel >= 0).all(axis=1) & (pixel < [640, 480]).all(axis=1)
        pixel = np.clip(pixel, 0, [639, 479])
        error = np.where(inside, np.minimum(error, np.abs(points[:, 2] - plane[pixel[:, 1], pixel[:, 0]])), error)
    assert error.max() <= 2e-5  # float32 storage and the colour pixel's sub-pixel offset in the footprint
    assert (registered[20:-20, 40:-40] > 0).mean() > 0.999  # the footprints tile the surface: no warp gaps


def test_one_pixel_holes_are_closed_only_between_agreeing_neighbours():
    depth = np.full((9, 12), 0.5)
    depth[4, 3] = 0.0  # a 1-pixel hole in a surface
    depth[:, 8:10] = 0.0  # a 2-pixel-wide gap
    depth[1, 1], depth[1, 0], depth[0, :3], depth[2, :3] = 0.0, 0.9, 0.0, 0.0  # a hole between two surfaces
    filled = fill_one_pixel_holes(depth)
    assert filled[4, 3] == pytest.approx(0.5)
    assert (filled[:, 8:10] == 0).all() and filled[1, 1] == 0
    np.testing.assert_array_equal(filled[depth > 0], depth[depth > 0])


def test_the_z_buffer_keeps_the_nearer_surface_and_leaves_the_disocclusion_empty():
    depth = np.full((480, 640), 1.0)
    depth[200:280, 280:360] = 0.4  # a near square in front of a far wall
    near = depth < 0.5
    x, y = _depth_pixel_rays()
    colour = sk_depth_to_color(np.stack([x * depth, y * depth, depth], axis=-1))
    uv = np.rint((colour @ STB_K["sk_color"].T)[..., :2] / colour[..., 2:]).astype(int)
    near_pixels = {tuple(p) for p in uv[near]}
    hidden = [tuple(p) for p in uv[~near] if tuple(p) in near_pixels]
    assert len(hidden) > 100  # wall points seen by the depth camera land behind the square in colour
    for fill_holes in (False, True):
        registered = register_sk_depth(depth, fill_holes=fill_holes)
        assert all(abs(registered[v, u] - 0.4) < 0.01 for u, v in hidden)
        assert all(registered[v, u] < 0.41 for u, v in near_pixels)
        row = registered[int(np.mean([v for _, v in near_pixels]))]
        empty_run = max(len(run) for run in "".join("0" if d == 0 else "1" for d in row).split("1"))
        assert empty_run >= 10  # the wall beside the square that only the colour camera sees: no data


@pytest.fixture
def stb_hand_depth(stb, tmp_path):
    """A copy of the fixture whose test-split SK_depth images render the hand: a disc (radius 4 px) at each
    joint, at the joint's depth-camera z, in front of a wall at 0.9 m."""
    root = tmp_path / "stb"
    shutil.copytree(stb.root, root)
    v, u = np.mgrid[0:480, 0:640]
    for seq in ("B1Counting", "B1Random"):
        for frame in range(FRAMES):
            joints = sk_color_to_depth(stb.color_joints[seq][frame])
            uv = project(joints, STB_K["sk_depth"])
            image = np.full((480, 640), 0.9)
            for j in np.argsort(-joints[:, 2]):  # far to near: the nearer joint's disc is painted last
                image[(u - uv[j, 0]) ** 2 + (v - uv[j, 1]) ** 2 <= 16] = joints[j, 2]
            Image.fromarray(encode_stb_depth(image)).save(root / "images" / seq / f"SK_depth_{frame}.png")
    return root


def test_registered_depth_at_the_joints_is_the_joints_depth(stb, stb_hand_depth):
    data = STBDataset(stb_hand_depth, split="test", depth=True)
    checked = 0
    for i in range(len(data)):
        sample = data[i]
        depth = sample["depth"]
        assert depth.shape == (1, 480, 640) and depth.dtype == torch.float32
        uv, z = sample["joints2d"].numpy(), sample["joints3d"].numpy()[:, 2]
        gaps = np.linalg.norm(uv[:, None] - uv[None], axis=-1) + np.eye(21) * 1e9
        for j in np.nonzero(gaps.min(axis=1) > 14)[0]:  # joints whose discs overlap no other in either image
            col, row = np.rint(uv[j]).astype(int)
            assert float(depth[0, row, col]) == pytest.approx(z[j], abs=1.5e-3)
            checked += 1
        wall = depth[0][depth[0] > 0.8]
        assert wall.numel() > 0.9 * 480 * 640 and (wall - 0.9).abs().max() < 0.01  # the wall, tilted by R
    assert checked >= 5 * len(data)
    mirrored = STBDataset(stb_hand_depth, split="test", depth=True, mirror=True)[0]
    assert torch.equal(mirrored["depth"], torch.flip(data[0]["depth"], dims=[-1]))


def test_depth_option_is_for_the_sk_colour_camera_only(stb):
    with pytest.raises(ValueError, match="camera 'bb_left' has no depth"):
        STBDataset(stb.root, split="test", camera="bb_left", depth=True)
    with pytest.raises(ValueError, match="true or false"):
        STBDataset(stb.root, split="test", depth="registered")
    assert "depth" not in STBDataset(stb.root, split="test", camera="bb_right")[0]


def test_missing_depth_image_names_the_file(stb_copy):
    (stb_copy / "images" / "B1Counting" / "SK_depth_1.png").unlink()
    data = STBDataset(stb_copy, split="test", depth=True)
    assert data[0]["depth"].shape == (1, 480, 640)
    with pytest.raises(DatasetError, match="SK_depth_1.png"):
        data[1]


def test_converted_shards_carry_depth_only_with_the_option(stb, tmp_path):
    import h5py

    from datasets import build_dataset
    from datasets.transforms import HandCrop
    from datasets.verify import verify_directory
    from tools.convert_dataset import main as convert_tool

    size = 48
    for option, out in ((["--option", "depth=true"], tmp_path / "with"), ([], tmp_path / "without")):
        args = ["stb", "--root", str(stb.root), "--out", str(out), "--split", "test", "--size", str(size),
                "--no-progress", *option]
        assert convert_tool(args) == 0
        assert verify_directory(out / "test", tolerance_px=0.01) == []
        with h5py.File(out / "test" / "shard-000000.h5", "r") as f:
            assert ("depth" in f) is bool(option)
            if option:
                assert f["depth"].dtype == np.uint16 and f["depth"].shape[1:] == (size, size)
        shards = build_dataset("shards", out / "test")
        reader = build_dataset("stb", stb.root, split="test", transform=HandCrop(size), depth=bool(option))
        assert len(shards) == len(reader) == 2 * FRAMES
        for i in range(len(reader)):
            got, expected = shards[i], reader[i]
            assert ("depth" in got) is bool(option) and ("depth" in expected) is bool(option)
            if option:
                assert float((got["depth"] - expected["depth"]).abs().max()) <= 0.0005 + 1e-6
                seq, frame = reader.sequences[i // FRAMES], i % FRAMES  # the fixture's wall, seen from the colour camera
                assert float((got["depth"] - stb.sk_depth[seq][frame][0, 0]).abs().max()) < 0.01
