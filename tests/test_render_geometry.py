"""Renderer geometry and scene sampling, checked by invariants on meshes with known answers."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from datasets.geometry import project, unproject
from render.postprocess import composite, depth_to_millimetres, joint_visibility
from render.sampling import Lighting, SynthConfig, draw_hand, draw_lighting, place_hand, sample_rng

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
K = np.array([[55.0, 0, (SIZE - 1) / 2], [0, 61.0, (SIZE - 1) / 2], [0, 0, 1]], np.float32)
FRONT_LIGHT = Lighting(np.array([0.0, 0.0, 1.0]), np.ones(3), 2.0, 0.3)


@pytest.fixture(scope="module")
def quad_renderer():
    from render.renderer import HandRenderer

    faces = np.array([[0, 2, 1], [0, 3, 2]])  # counter-clockwise as seen by an OpenCV camera looking at +z
    renderer = HandRenderer(SIZE, SIZE, faces, 4)
    yield renderer
    renderer.close()


def _quad(x0, x1, y0, y1, z_of):
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return np.array([[x, y, z_of(x, y)] for x, y in corners], np.float32)


def test_silhouette_covers_exactly_the_pixels_inside_the_projected_quad(quad_renderer):
    quad = _quad(-0.21, 0.33, -0.12, 0.27, lambda x, y: 1.3)
    out = quad_renderer.render(quad, np.full((4, 3), 0.7, np.float32), K, FRONT_LIGHT)
    uv = project(quad, K)
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    inside = ((cols > uv[:, 0].min()) & (cols < uv[:, 0].max()) & (rows > uv[:, 1].min()) & (rows < uv[:, 1].max()))
    assert np.array_equal(out.mask.astype(bool), inside)
    np.testing.assert_allclose(out.depth[inside], 1.3, atol=1e-4)
    assert np.all(out.depth[~inside] == 0)


def test_depth_of_a_tilted_plane_is_camera_z_of_the_surface(quad_renderer):
    # Plane z = 1 + 0.8 x + 0.5 y: tilted in both image axes, so a flipped axis would show.
    plane = lambda x, y: 1.0 + 0.8 * x + 0.5 * y  # noqa: E731
    quad = _quad(-0.3, 0.3, -0.3, 0.3, plane)
    out = quad_renderer.render(quad, np.full((4, 3), 0.7, np.float32), K, FRONT_LIGHT)
    rows, cols = np.nonzero(out.mask)
    assert len(rows) > 500
    uv = np.stack([cols, rows], -1).astype(np.float64)
    rays = unproject(uv, np.ones(len(uv)), K).astype(np.float64)  # points at z = 1 on each pixel's ray
    # Ray point t·(rx, ry, 1) on the plane: t = 1 / (1 − 0.8 rx − 0.5 ry).
    expected = 1.0 / (1.0 - 0.8 * rays[:, 0] - 0.5 * rays[:, 1])
    np.testing.assert_allclose(out.depth[rows, cols], expected, rtol=2e-4)


def test_single_sample_render_has_no_edge_blending(quad_renderer):
    quad = _quad(-0.2, 0.25, -0.15, 0.2, lambda x, y: 1.0)
    out = quad_renderer.render(quad, np.full((4, 3), 0.6, np.float32), K, FRONT_LIGHT)
    hand = out.mask.astype(bool)
    # A flat quad lit head-on: its colour varies by a few levels (specular highlight); with
    # anti-aliasing the edge pixels would be blended towards the black clear colour.
    padded = np.pad(hand, 1)
    edge = hand & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    assert edge.sum() > 40
    interior = out.rgb[hand & ~edge].astype(int)
    assert out.rgb[edge].min() >= interior.min() - 2 and np.ptp(interior) <= 8
    background = np.full((SIZE, SIZE, 3), 200, np.uint8)
    image = composite(out.rgb, out.mask, background)
    assert np.array_equal(image[hand], out.rgb[hand]) and np.all(image[~hand] == 200)


def test_directional_light_brightens_the_surface_it_faces(quad_renderer):
    quad = _quad(-0.2, 0.2, -0.2, 0.2, lambda x, y: 1.0)
    colours = np.full((4, 3), 0.5, np.float32)
    facing = quad_renderer.render(quad, colours, K, Lighting(np.array([0.0, 0.0, 1.0]), np.ones(3), 2.0, 0.2))
    grazing = quad_renderer.render(quad, colours, K, Lighting(np.array([1.0, 0.0, 0.05]), np.ones(3), 2.0, 0.2))
    hand = facing.mask.astype(bool)
    assert facing.rgb[hand].mean() > grazing.rgb[hand].mean() + 20


def test_placement_puts_every_joint_inside_the_margin():
    cfg = SynthConfig(image_size=96, margin=0.08)
    K96 = cfg.intrinsics()
    low, high = cfg.margin * 96, 95 - cfg.margin * 96
    base = np.random.default_rng(5).normal(scale=0.04, size=(21, 3))
    for index in range(200):
        rng = sample_rng(7, index)
        joints = base @ Rotation.random(random_state=index).as_matrix().T * rng.uniform(0.5, 2.0)
        translation = place_hand(rng, joints, cfg)
        uv = project(joints + translation, K96)
        assert np.all(uv >= low - 1e-3) and np.all(uv <= high + 1e-3), index
        assert np.all(joints[:, 2] + translation[2] >= cfg.min_depth_m - 1e-9)


def test_uniform_rotations_average_to_zero_and_ranges_hold():
    cfg = SynthConfig()
    draws = [draw_hand(sample_rng(0, i), cfg) for i in range(3000)]
    mean_rotation = np.mean([Rotation.from_rotvec(d.global_orient).as_matrix() for d in draws], axis=0)
    assert np.abs(mean_rotation).max() < 0.06  # E[R] = 0 for the uniform (Haar) distribution on SO(3)
    pose = np.stack([d.pose_pca for d in draws])
    betas = np.stack([d.betas for d in draws])
    assert pose.min() >= -2 and pose.max() <= 2 and pose.min() < -1.9 and pose.max() > 1.9
    assert np.abs(betas).max() <= 0.03


def test_a_sample_does_not_depend_on_which_samples_were_drawn_before():
    cfg = SynthConfig()
    alone = draw_hand(sample_rng(3, 17), cfg)
    for i in range(17):
        draw_hand(sample_rng(3, i), cfg)
    again = draw_hand(sample_rng(3, 17), cfg)
    assert np.array_equal(alone.pose_pca, again.pose_pca) and np.array_equal(alone.global_orient, again.global_orient)
    assert not np.array_equal(alone.pose_pca, draw_hand(sample_rng(4, 17), cfg).pose_pca)


def test_lights_come_from_the_camera_side():
    directions = np.stack([draw_lighting(sample_rng(1, i), SynthConfig()).direction for i in range(200)])
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-9)
    assert np.all(directions[:, 2] >= 0)


def test_joint_visibility_rules():
    depth = np.zeros((10, 10), np.float32)
    depth[2, 3] = 0.50  # surface 0.5 m: joint at 0.51 is within 1.5 cm → visible
    depth[5, 5] = 0.40  # surface 10 cm in front of a joint at 0.50 → occluded
    joints = np.array([[0, 0, 0.51], [0, 0, 0.50], [0, 0, 0.5], [0, 0, 0.5], [0, 0, 0.5]])
    uv = np.array([[3.2, 1.8], [5.0, 5.0], [7.0, 7.0], [-0.6, 4.0], [4.0, 9.6]])
    visible = joint_visibility(joints, uv, depth, tolerance_m=0.015)
    assert visible.tolist() == [True, False, True, False, False]


def test_depth_is_stored_as_rounded_millimetres():
    depth = np.array([[0.0, 0.4004, 0.4006], [1.23449, 65.5, 0.0]], np.float32)
    assert depth_to_millimetres(depth).tolist() == [[0, 400, 401], [1234, 65500, 0]]
    with pytest.raises(ValueError, match="uint16"):
        depth_to_millimetres(np.array([[70.0]]))


def test_config_rejects_unknown_keys_with_the_closest_names():
    with pytest.raises(ValueError, match="image_size"):
        SynthConfig.from_dict({"image_sise": 128})
    cfg = SynthConfig.from_dict({"image_size": 128, "pose_range": [-1, 1]})
    assert cfg.pose_range == (-1.0, 1.0) and '"image_size": 128' in cfg.to_json()
    with pytest.raises(ValueError, match="pose_range"):
        SynthConfig(pose_range=(2, -2))


def test_missing_gl_library_gives_an_install_hint():
    script = textwrap.dedent("""
        import os
        os.environ["PYOPENGL_PLATFORM"] = "egl"
        from OpenGL.platform import ctypesloader
        def refuse(dll_type, name, mode=None):
            raise OSError(f"lib{name}.so: cannot open shared object file")
        ctypesloader.loadLibrary = refuse
        from render.gl import GLUnavailableError, import_pyrender
        try:
            import_pyrender()
        except GLUnavailableError as exc:
            print("CLEAR:", exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "CLEAR:" in result.stdout, result.stderr
    assert "apt-get install -y libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri" in result.stdout


def test_skin_colours_come_from_the_palette_or_a_user_texture():
    from render.sampling import draw_skin, texture_colours

    cfg = SynthConfig()
    template = np.random.default_rng(0).normal(size=(500, 3)) * [0.08, 0.03, 0.01]  # long axis = x
    skin = draw_skin(sample_rng(0, 1), cfg, template)
    assert skin.shape == (500, 3) and skin.dtype == np.float32 and 0 <= skin.min() and skin.max() <= 1
    nearest_tone = np.abs(np.asarray(cfg.skin_tones)[:, None, :] - skin.mean(0)).sum(-1).min()
    assert nearest_tone < 0.15  # per-sample jitter and shading variation stay close to a palette tone
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :10] = (255, 0, 0)
    image[:, 10:] = (0, 0, 255)
    colours = texture_colours(image, template)
    along = template[:, 0]
    # The texture's horizontal axis follows the template's longest axis: one end red, the other blue.
    assert {tuple(colours[np.argmin(along)]), tuple(colours[np.argmax(along)])} == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}


def test_compiled_normals_and_depth_equal_the_numpy_formulas():
    """render.kernels replaces two numpy chains of the renderer with the same float32 arithmetic: equal bits."""
    from render.kernels import linear_depth, vertex_normals
    from render.renderer import vertex_normals_operator

    rng = np.random.default_rng(3)
    vertices = rng.normal(size=(40, 3)).astype(np.float32)
    faces = np.array([rng.choice(40, 3, replace=False) for _ in range(70)], dtype=np.int64)
    vertices[39] = 0.0  # an isolated vertex keeps a zero normal (its length is floored at 1e-12)
    faces = faces[(faces != 39).all(axis=1)]
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    reference = vertex_normals_operator(faces, 40) @ np.cross(v1 - v0, v2 - v0)
    reference = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    normals = np.empty((40, 3), np.float32)
    vertex_normals(vertices, faces, normals)
    assert reference.dtype == np.float32 and np.array_equal(normals, reference)
    assert np.allclose(np.linalg.norm(normals[:39], axis=1), 1.0, atol=1e-6) and not normals[39].any()

    window_z = rng.uniform(0.0, 1.0, (6, 5)).astype(np.float32)
    window_z[window_z > 0.8] = 1.0  # nothing drawn there
    near, far = 0.01, 20.0
    flipped = window_z[::-1]
    expected = (2.0 * near * far) / (far + near - (2.0 * flipped - 1.0) * (far - near))
    expected[flipped >= 1.0] = 0.0
    depth = np.empty((6, 5), np.float32)
    linear_depth(window_z, near, far, depth)
    assert np.array_equal(depth, expected.astype(np.float32)) and (depth == 0).any()


def test_finish_sample_equals_composite_millimetres_and_mask():
    """The pipeline's one-pass labels give what composite, depth_to_millimetres and depth > 0 give, bit for bit."""
    from render.postprocess import finish_sample

    rng = np.random.default_rng(8)
    rows, cols = np.mgrid[:48, :40]
    depth = np.where((rows - 20) ** 2 + (cols - 18) ** 2 < 15 ** 2, rng.uniform(0.2, 1.5, (48, 40)), 0).astype(np.float32)
    depth[3, 4] = 0.4005  # halfway between two millimetres in decimal (not exactly in float32)
    sensor = np.where(rng.uniform(size=depth.shape) < 0.1, 0, depth * 1.01).astype(np.float32)  # another stored depth
    rgb, background = (rng.integers(0, 256, (48, 40, 3)).astype(np.uint8) for _ in range(2))
    mask = (depth > 0).astype(np.uint8)
    for stored in (depth, sensor):
        out = np.zeros_like(rgb)
        millimetres, mask_out = np.zeros(depth.shape, np.uint16), np.full(depth.shape, 7, np.uint8)
        finish_sample(rgb, depth, stored, background, out, millimetres, mask_out)
        assert np.array_equal(out, composite(rgb, mask, background))
        assert np.array_equal(millimetres, depth_to_millimetres(stored)) and np.array_equal(mask_out, mask)
    in_place = background.copy()  # the pipeline draws the background into the shard row, then finishes it there
    finish_sample(rgb, depth, depth, in_place, in_place, millimetres, mask_out)
    assert np.array_equal(in_place, composite(rgb, mask, background))
    with pytest.raises(ValueError, match="uint16"):
        finish_sample(rgb, depth, depth * 100, background, out, millimetres, mask_out)


def test_skin_colours_equal_the_formula_of_draw_skin():
    """draw_skin's compiled pass computes clip(base·jitter·(1 − g·a·w)·(1 + s·n), 0, 1) with the same draws."""
    from render.sampling import SKIN_GRADIENT_CHANNELS, draw_skin

    cfg = SynthConfig()
    template = (np.random.default_rng(0).normal(size=(300, 3)) * [0.08, 0.03, 0.01]).astype(np.float32)
    texture = np.random.default_rng(1).uniform(size=(300, 3))
    for base_colours in (None, texture):
        skin = draw_skin(sample_rng(4, 2), cfg, template, base_colours)
        rng = sample_rng(4, 2)  # the same draws, in draw_skin's order
        base = texture if base_colours is not None else np.asarray(cfg.skin_tones[rng.integers(len(cfg.skin_tones))])
        jitter = 1.0 + 0.05 * rng.standard_normal(3)
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        along = template.astype(np.float64) @ axis
        along = (along - along.min()) / np.ptp(along)
        noise = 1.0 + cfg.skin_vertex_noise * rng.standard_normal((300, 1))
        expected = np.clip(base * jitter * (1.0 - cfg.skin_gradient * along[:, None] * SKIN_GRADIENT_CHANNELS) * noise,
                           0, 1)
        assert skin.dtype == np.float32 and np.allclose(skin, expected, rtol=0, atol=1e-6)
