"""The open hand's closed surface: an implicit field of blended capsules, meshed by surface nets.

The hand is the zero level set of ``F(p) = smooth-union of primitives`` (negative inside):
tapered elliptic capsules for the forearm stub, the four metacarpals, every phalanx and
the thumb, and ellipsoids for the thenar and hypothenar eminences. The palm parts blend
with a wide radius (a smooth palm plate), digits with a narrow one (webs only at the base).

Meshing is *naive surface nets* on a regular grid: one vertex per grid cell that the
surface crosses (the mean of the edge crossings), one quad per crossed grid edge joining
the four cells around it, oriented so that normals point out of the hand. The result is a
closed, consistently oriented surface; :func:`check_closed_manifold` verifies it. Vertices
are then relaxed (Laplacian step) and pulled back onto the level set (Newton step).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from render.open_hand.skeleton import FINGER_ORDER, FLATTEN, HandSkeleton

PALM_BLEND = 0.012  # smooth-union radius among palm parts (metres)
DIGIT_BLEND = 0.005  # smooth-union radius between a digit and the palm
GRID_STEP = 0.0058
RELAX_ITERATIONS = 6


@dataclass(frozen=True)
class Capsule:
    """Segment ``a→b`` with lateral radius ``ra→rb`` (linear), thickness ``flatten``·radius along ``up``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float
    up: np.ndarray
    flatten: float = FLATTEN

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Approximate signed distance (N,) of points ``p`` (N, 3)."""
        ab = self.b - self.a
        t = np.clip((p - self.a) @ ab / (ab @ ab), 0.0, 1.0)
        offset = p - (self.a + t[:, None] * ab)
        r = self.ra + (self.rb - self.ra) * t
        up = self.up - (self.up @ ab) / (ab @ ab) * ab
        up = up / np.linalg.norm(up)
        along_up = offset @ up
        across = offset - along_up[:, None] * up
        scaled = np.sqrt((along_up / self.flatten) ** 2 + np.einsum("ij,ij->i", across, across))
        return (scaled - r) * np.where(scaled > r, 1.0, self.flatten)


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid with centre, orthonormal ``axes`` (3, 3) rows and semi-axes ``radii``."""

    centre: np.ndarray
    axes: np.ndarray
    radii: np.ndarray

    def distance(self, p: np.ndarray) -> np.ndarray:
        local = (p - self.centre) @ self.axes.T / self.radii
        return (np.linalg.norm(local, axis=1) - 1.0) * self.radii.min()


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distance fields with blend radius ``k``."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k / 4.0


def palm_primitives(skeleton: HandSkeleton) -> list:
    """Forearm stub, metacarpals and eminences (blended widely into one palm)."""
    up = np.array([0.0, 1.0, 0.0])
    prims = [Capsule(np.array([-0.020, 0.0, 0.004]), np.array([0.012, 0.0, 0.004]), 0.026, 0.030, up, 0.62)]
    for name in FINGER_ORDER[1:]:
        f = skeleton.fingers[name]
        prims.append(Capsule(f.base, f.points[0], 0.012, f.radii[0] + 0.002, up, 1.05))
    thumb = skeleton.fingers["thumb"]
    d = thumb.segment_directions()[0]
    n = thumb.dorsal[0]
    prims.append(Ellipsoid(thumb.points[0] + 0.020 * d - 0.004 * n + np.array([0.0, -0.002, 0.006]),
                           np.array([d, n, np.cross(d, n)]), np.array([0.028, 0.013, 0.016])))
    prims.append(Ellipsoid(np.array([0.040, -0.005, 0.028]), np.eye(3), np.array([0.032, 0.011, 0.013])))
    return prims


def digit_primitives(skeleton: HandSkeleton, name: str) -> list:
    """The capsules of one digit's three movable segments."""
    f = skeleton.fingers[name]
    return [Capsule(f.points[i], f.points[i + 1], f.radii[i], f.radii[i + 1], f.dorsal[i]) for i in range(3)]


def hand_field(skeleton: HandSkeleton, p: np.ndarray) -> np.ndarray:
    """Signed field (N,) at points ``p`` (N, 3): negative inside the hand."""
    palm = None
    for prim in palm_primitives(skeleton):
        d = prim.distance(p)
        palm = d if palm is None else smooth_union(palm, d, PALM_BLEND)
    field = palm
    for name in FINGER_ORDER:
        digit = np.min([c.distance(p) for c in digit_primitives(skeleton, name)], axis=0)
        field = smooth_union(field, digit, DIGIT_BLEND)
    return field


def surface_nets(field: np.ndarray, origin: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed quad mesh of the zero level set of ``field`` sampled on a grid.

    ``field`` (nx, ny, nz) must be positive on the grid border. Returns vertices (V, 3)
    and outward-oriented quads (Q, 4).
    """
    inside = field < 0
    nx, ny, nz = field.shape
    cell_sum = np.zeros((nx - 1, ny - 1, nz - 1, 3))
    cell_count = np.zeros((nx - 1, ny - 1, nz - 1))
    # Edge crossings accumulate into the (up to) four cells around each edge.
    for axis in range(3):
        lo = [slice(0, n - 1) if a == axis else slice(None) for a, n in enumerate(field.shape)]
        hi = [slice(1, None) if a == axis else slice(None) for a in range(3)]
        f0, f1 = field[tuple(lo)], field[tuple(hi)]
        crossed = (f0 < 0) != (f1 < 0)
        t = np.where(crossed, f0 / np.where(crossed, f0 - f1, 1.0), 0.0)
        idx = np.argwhere(crossed)
        point = idx.astype(np.float64)
        point[:, axis] += t[crossed]
        others = [a for a in range(3) if a != axis]
        for da in (0, 1):
            for db in (0, 1):
                cell = idx.copy()
                cell[:, others[0]] -= da
                cell[:, others[1]] -= db
                ok = np.all((cell >= 0) & (cell < np.array(cell_count.shape)), axis=1)
                np.add.at(cell_sum, tuple(cell[ok].T), point[ok])
                np.add.at(cell_count, tuple(cell[ok].T), 1.0)
    active = cell_count > 0
    vertex_index = -np.ones(active.shape, dtype=np.int64)
    vertex_index[active] = np.arange(active.sum())
    vertices = origin + step * (cell_sum[active] / cell_count[active][:, None])
    quads = []
    for axis in range(3):
        a, b = [x for x in range(3) if x != axis]
        lo = [slice(0, n - 1) if x == axis else slice(None) for x, n in enumerate(field.shape)]
        hi = [slice(1, None) if x == axis else slice(None) for x in range(3)]
        crossed = inside[tuple(lo)] != inside[tuple(hi)]
        idx = np.argwhere(crossed)
        idx = idx[(idx[:, a] > 0) & (idx[:, b] > 0)]
        # Inside at the lower end → the outward normal is +axis; the ring below turns
        # counter-clockwise about e_a × e_b, which is +axis or −axis.
        handedness = np.cross(np.eye(3)[a], np.eye(3)[b])[axis]
        outward_positive = inside[tuple(idx.T)] == (handedness > 0)
        ring = []
        for da, db in ((1, 1), (0, 1), (0, 0), (1, 0)):  # counter-clockwise in the (a, b) plane
            cell = idx.copy()
            cell[:, a] -= da
            cell[:, b] -= db
            ring.append(vertex_index[tuple(cell.T)])
        q = np.stack(ring, axis=1)
        q[~outward_positive] = q[~outward_positive][:, ::-1]
        quads.append(q)
    return vertices, np.concatenate(quads)


def triangulate(vertices: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Split each quad along its shorter diagonal, keeping orientation."""
    v = vertices[quads]
    d02 = np.linalg.norm(v[:, 0] - v[:, 2], axis=1)
    d13 = np.linalg.norm(v[:, 1] - v[:, 3], axis=1)
    use02 = d02 <= d13
    t1 = np.where(use02[:, None], quads[:, [0, 1, 2]], quads[:, [0, 1, 3]])
    t2 = np.where(use02[:, None], quads[:, [0, 2, 3]], quads[:, [1, 2, 3]])
    return np.concatenate([t1, t2]).astype(np.int64)


def edges_of(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2) of a triangle mesh."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def check_closed_manifold(faces: np.ndarray, num_vertices: int) -> None:
    """Raise ``ValueError`` unless the mesh is closed, oriented, manifold and of genus 0."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = directed[:, 0] * num_vertices + directed[:, 1]
    if np.unique(keys).size != keys.size:
        raise ValueError("mesh has a directed edge used twice (inconsistent orientation or non-manifold)")
    reverse = directed[:, 1] * num_vertices + directed[:, 0]
    if not np.all(np.isin(reverse, keys)):
        raise ValueError("mesh has a boundary edge (not closed)")
    euler = num_vertices - edges_of(faces).shape[0] + faces.shape[0]
    if euler != 2:
        raise ValueError(f"mesh Euler characteristic is {euler}, expected 2 (one closed genus-0 surface)")


def _neighbour_mean(vertices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    total = np.zeros_like(vertices)
    count = np.zeros(len(vertices))
    for s, d in ((0, 1), (1, 0)):
        np.add.at(total, edges[:, s], vertices[edges[:, d]])
        np.add.at(count, edges[:, s], 1.0)
    return total / count[:, None]


def _project(skeleton: HandSkeleton, p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """One Newton step of ``p`` towards the zero level set along the field gradient."""
    f = hand_field(skeleton, p)
    grad = np.zeros_like(p)
    for axis in range(3):
        dp = np.zeros(3)
        dp[axis] = eps
        grad[:, axis] = (hand_field(skeleton, p + dp) - hand_field(skeleton, p - dp)) / (2 * eps)
    g2 = np.einsum("ij,ij->i", grad, grad)
    return p - (f / np.maximum(g2, 1e-12))[:, None] * grad


def build_surface(skeleton: HandSkeleton, step: float = GRID_STEP) -> tuple[np.ndarray, np.ndarray]:
    """The hand's closed triangle mesh: vertices (V, 3) float64 metres, faces (F, 3) int64."""
    lo = np.array([-0.060, -0.050, -0.110])
    hi = np.array([0.210, 0.045, 0.075])
    counts = np.ceil((hi - lo) / step).astype(int) + 1
    axes = [lo[i] + step * np.arange(counts[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    field = hand_field(skeleton, grid).reshape(*counts)
    if (field[[0, -1]] <= 0).any() or (field[:, [0, -1]] <= 0).any() or (field[:, :, [0, -1]] <= 0).any():
        raise ValueError("the hand surface reaches the meshing grid's border; enlarge the grid")
    vertices, quads = surface_nets(field, lo, step)
    faces = triangulate(vertices, quads)
    edges = edges_of(faces)
    for _ in range(RELAX_ITERATIONS):
        vertices = 0.5 * vertices + 0.5 * _neighbour_mean(vertices, edges)
        vertices = _project(skeleton, vertices)
    check_closed_manifold(faces, len(vertices))
    return vertices, faces
