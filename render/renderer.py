"""Offscreen rendering of the hand mesh with pyrender (EGL): RGB and camera-z depth.

One :class:`HandRenderer` lives in each worker process and renders all its samples: the
GL context, scene, camera, light and mesh nodes are created once; per sample only the
vertex buffer (positions, normals, colours), the camera intrinsics and the light change.
Vertex data is written into the existing GL buffer with ``glBufferSubData`` instead of
building a new ``pyrender.Mesh`` (see ``docs/rendering_benchmark.md`` for the measured
difference).

Anti-aliasing is off: pyrender's stock offscreen path renders 4× multisampled and
resolves, which blends the hand's edge pixels with the clear colour (a dark halo after
compositing) and, under Mesa's software rasteriser, costs about 45% of the frame time.
:class:`_SingleSampleRenderer` replaces that framebuffer with a single-sample one, so
every pixel is either hand (depth > 0) or background, and mask, depth and colour agree
exactly. The default shaders (``render/shaders``: Lambert diffuse + a weak Blinn-Phong
highlight) replace pyrender's PBR shader, about half the cost per frame again
(``docs/rendering_benchmark.md``). Vertex colours are display (gamma 2.2) values.

Camera: intrinsics K in OpenCV convention (pixel centres at integer u, v); pyrender
uses OpenGL axes and pixel centres at +0.5, so the camera node is rotated by 180° about
x and the principal point is shifted by half a pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from render.gl import import_pyrender, offscreen_renderer
from render.kernels import linear_depth, vertex_normals as kernel_vertex_normals
from render.sampling import Lighting

pyrender = import_pyrender()
from OpenGL import GL  # noqa: E402  (after import_pyrender has chosen the platform)
from pyrender.constants import RenderFlags  # noqa: E402
from pyrender.shader_program import ShaderProgramCache  # noqa: E402

#: Our mesh shaders (Lambert + Blinn-Phong), loaded by pyrender in place of its PBR shaders.
SHADER_DIR = Path(__file__).resolve().parent / "shaders"

#: pyrender's camera node pose for an OpenCV camera at the origin (flip y and z).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


class _SingleSampleRenderer(pyrender.Renderer):
    """pyrender's renderer with a single-sample offscreen framebuffer (no MSAA resolve).

    Overrides two private methods of pyrender 0.1.45 (pinned in requirements.txt).
    """

    def _configure_main_framebuffer(self):
        if self._main_fb is not None and self._main_fb_dims == (self.viewport_width, self.viewport_height):
            return
        self._delete_main_framebuffer()
        self._main_cb, self._main_db = GL.glGenRenderbuffers(2)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_cb)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_RGBA, self.viewport_width, self.viewport_height)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._main_db)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT24, self.viewport_width,
                                 self.viewport_height)
        self._main_fb = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
        GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER,
                                     self._main_cb)
        GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER,
                                     self._main_db)
        # pyrender binds "_main_fb_ms" as the draw target; here it is the same framebuffer.
        self._main_fb_ms = self._main_fb
        self._main_fb_dims = (self.viewport_width, self.viewport_height)

    def _delete_main_framebuffer(self):
        if self._main_fb is not None:
            GL.glDeleteFramebuffers(1, [self._main_fb])
            GL.glDeleteRenderbuffers(2, [self._main_cb, self._main_db])
        self._main_fb = self._main_cb = self._main_db = None
        self._main_fb_ms = self._main_cb_ms = self._main_db_ms = None
        self._main_fb_dims = (None, None)

    def _read_main_framebuffer(self, scene, flags):
        """Return (RGB uint8 (H,W,3), camera-z depth float32 (H,W) in scene units, 0 = empty)."""
        width, height = self._main_fb_dims
        if getattr(self, "_read_buffers", (None,))[0] is None or self._read_buffers[0].shape[:2] != (height, width):
            self._read_buffers = (np.empty((height, width, 3), np.uint8), np.empty((height, width), np.float32))
        colour, window_z = self._read_buffers
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glReadPixels(0, 0, width, height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT, window_z)
        GL.glReadPixels(0, 0, width, height, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, colour)
        camera = scene.main_camera_node.camera
        depth = np.empty((height, width), np.float32)
        linear_depth(window_z, float(camera.znear), float(camera.zfar), depth)  # also flips: GL rows start at the bottom
        return colour[::-1].copy(), depth


@dataclass
class RenderOutput:
    rgb: np.ndarray  # (H,W,3) uint8, background pixels undefined
    depth: np.ndarray  # (H,W) float32 metres along camera z, 0 = background

    @property
    def mask(self) -> np.ndarray:
        return (self.depth > 0).astype(np.uint8)


def vertex_normals_operator(faces: np.ndarray, num_vertices: int) -> scipy.sparse.csr_matrix:
    """Sparse (V,F) incidence matrix: ``A @ face_normals`` sums the normals of each vertex's faces."""
    rows = faces.reshape(-1)
    cols = np.repeat(np.arange(len(faces)), 3)
    data = np.ones(len(rows), dtype=np.float32)
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(num_vertices, len(faces)))


class HandRenderer:
    """Renders one coloured triangle mesh with a directional + ambient light; reused for every sample.

    ``shading="lambert"`` uses the toolkit's shaders in ``render/shaders`` (diffuse +
    a weak Blinn-Phong highlight); ``"pbr"`` keeps pyrender's metallic-roughness shader.
    """

    def __init__(self, width: int, height: int, faces: np.ndarray, num_vertices: int,
                 znear: float = 0.01, zfar: float = 20.0, shading: str = "lambert"):
        self.width, self.height = int(width), int(height)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.num_vertices = int(num_vertices)
        self._offscreen = offscreen_renderer(self.width, self.height)
        self._offscreen._renderer.delete()
        self._offscreen._renderer = _SingleSampleRenderer(self.width, self.height)
        if shading == "lambert":
            self._offscreen._renderer._program_cache = ShaderProgramCache(shader_dir=str(SHADER_DIR))
        elif shading != "pbr":
            raise ValueError(f"shading should be 'lambert' or 'pbr', found {shading!r}")
        self.scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.3, 0.3, 0.3])
        self._camera = pyrender.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=znear, zfar=zfar)
        self.scene.add(self._camera, pose=OPENCV_TO_OPENGL)
        self._light = pyrender.DirectionalLight(color=np.ones(3), intensity=3.0)
        self._light_node = self.scene.add(self._light, pose=np.eye(4))
        self._vertex_data = np.zeros((self.num_vertices, 10), dtype=np.float32)  # position, normal, RGBA
        self._vertex_data[:, 9] = 1.0
        zeros = np.zeros((self.num_vertices, 3), np.float32)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=0.65, alphaMode="OPAQUE")
        self._primitive = pyrender.Primitive(
            positions=zeros, normals=zeros + [0, 0, 1], color_0=np.ones((self.num_vertices, 4), np.float32),
            indices=self.faces.astype(np.uint32), material=material, mode=pyrender.GLTF.TRIANGLES)
        self.scene.add(pyrender.Mesh([self._primitive]))

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """Area-weighted unit vertex normals (V,3) float32 of the mesh posed at ``vertices`` (V,3)
        (:func:`render.kernels.vertex_normals`; :func:`vertex_normals_operator` is the reference)."""
        normals = np.empty((self.num_vertices, 3), np.float32)
        kernel_vertex_normals(np.ascontiguousarray(vertices, np.float32), self.faces, normals)
        return normals

    def _upload(self, vertices: np.ndarray, colours: np.ndarray) -> None:
        data = self._vertex_data
        data[:, 0:3] = vertices
        data[:, 3:6] = self.vertex_normals(vertices)
        data[:, 6:9] = colours
        primitive = self._primitive
        if primitive._vaid is None:  # first frame: pyrender uploads the buffers itself
            primitive.positions, primitive.normals = data[:, 0:3].copy(), data[:, 3:6].copy()
            primitive.color_0 = data[:, 6:10].copy()
            return
        self._offscreen._platform.make_current()
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, primitive._buffers[0])
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)

    def _set_light(self, lighting: Lighting) -> None:
        direction = np.asarray(lighting.direction, dtype=np.float64)
        # pyrender lights shine along the node's −z axis; build a rotation whose −z is `direction`.
        z_axis = -direction / np.linalg.norm(direction)
        helper = np.array([1.0, 0.0, 0.0]) if abs(z_axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x_axis = np.cross(helper, z_axis)
        x_axis /= np.linalg.norm(x_axis)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis], axis=1)
        self.scene.set_pose(self._light_node, pose)
        self._light.color = np.asarray(lighting.colour, dtype=np.float32)
        self._light.intensity = float(lighting.intensity)
        self.scene.ambient_light = np.full(3, lighting.ambient, dtype=np.float32)

    def render(self, vertices: np.ndarray, colours: np.ndarray, K: np.ndarray, lighting: Lighting) -> RenderOutput:
        """Render the mesh at ``vertices`` (V,3, metres, OpenCV camera frame) with per-vertex
        ``colours`` (V,3 in [0,1]) through intrinsics ``K`` (3,3)."""
        if vertices.shape != (self.num_vertices, 3):
            raise ValueError(f"vertices should have shape ({self.num_vertices}, 3), found {vertices.shape}")
        self._camera.fx, self._camera.fy = float(K[0, 0]), float(K[1, 1])
        self._camera.cx, self._camera.cy = float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5
        self._set_light(lighting)
        self._upload(vertices, colours)
        rgb, depth = self._offscreen.render(self.scene, flags=RenderFlags.NONE)
        return RenderOutput(rgb, depth)

    def close(self) -> None:
        """Release the GL context. pyrender's EGL clean-up terminates the EGL display, which
        all renderers of a process share: close a renderer only when no other one is in use."""
        self._offscreen.delete()
