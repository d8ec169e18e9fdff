"""The hand model layer: MANO-format parameters → mesh and mano21 joints (numpy in, numpy out).

:class:`HandModel` wraps ``smplx.MANO`` (PCA pose, ``flat_hand_mean=False``, right hand)
around either the embedded open hand (default, ``assets/open_hand/MANO_RIGHT.npz``) or a
user's real MANO file (``.pkl`` read chumpy-free by :mod:`render.mano_io`, or ``.npz``).

smplx returns MANO's 16 kinematic joints; the five fingertips are appended as surface
vertices (real MANO: smplx's ids thumb 744, index 320, middle 443, ring 554, pinky 671;
the open hand declares ``tip_vertex_ids``) and the 21 joints are reordered to mano21 with
:func:`datasets.joints.permutation` (``method.md`` §2). Units are metres.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from smplx import MANO
from smplx.utils import Struct

from datasets.joints import MANO16_WITH_TIPS, permutation
from render.mano_io import ManoFileError, load_mano

EMBEDDED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "open_hand" / "MANO_RIGHT.npz"
#: Fingertip vertex ids of the real 778-vertex MANO mesh (smplx ``VERTEX_IDS['mano']``), thumb→pinky.
MANO_TIP_VERTEX_IDS = (744, 320, 443, 554, 671)
TIP_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
_TO_MANO21 = permutation(MANO16_WITH_TIPS)


@dataclass
class HandOutput:
    """Posed hands. ``vertices`` (B, V, 3) and ``joints`` (B, 21, 3, mano21) in metres;
    ``hand_pose`` (B, 45): the finger axis-angle actually applied (PCA part + mean)."""

    vertices: np.ndarray
    joints: np.ndarray
    hand_pose: np.ndarray


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HandModel:
    """MANO-format hand: ``model(pose_pca, betas, global_orient) -> HandOutput``.

    ``model_path``: None → the embedded open hand; ``*.pkl`` → a real MANO pickle;
    ``*.npz`` → MANO arrays in an npz. ``num_pca_comps``: number of PCA pose coefficients
    accepted by :meth:`__call__` (1–45).
    """

    def __init__(self, model_path: str | Path | None = None, num_pca_comps: int = 10):
        path = Path(model_path) if model_path is not None else EMBEDDED_MODEL
        if not 1 <= int(num_pca_comps) <= 45:
            raise ValueError(f"num_pca_comps must be in 1..45, got {num_pca_comps}")
        data = load_mano(path)
        self.model_path = path
        self.num_pca_comps = int(num_pca_comps)
        if "tip_vertex_ids" in data:
            tips = np.asarray(data["tip_vertex_ids"], dtype=np.int64).reshape(-1)
        else:
            tips = np.array(MANO_TIP_VERTEX_IDS, dtype=np.int64)
        num_vertices = int(np.shape(data["v_template"])[0])
        if tips.shape != (5,) or tips.min() < 0 or tips.max() >= num_vertices:
            raise ManoFileError(f"{path}: fingertip vertex ids {tips.tolist()} do not fit a {num_vertices}-vertex mesh")
        self.num_vertices = num_vertices
        self.tip_vertex_ids = dict(zip(TIP_FINGERS, (int(t) for t in tips)))
        self._tips = torch.as_tensor(tips)
        self.faces = np.asarray(data["f"], dtype=np.int32)
        self._components = np.asarray(data["hands_components"], dtype=np.float32)[: self.num_pca_comps]
        self._mean = np.asarray(data["hands_mean"], dtype=np.float32)
        if "open_hand_version" in data:
            name = f"open-hand v{int(data['open_hand_version'])}"
        else:
            name = path.name
        self.identity = f"{name} (sha256:{_sha256(path)[:16]})"
        # smplx switches PCA off at 45 components; then it takes axis-angle, which we project ourselves.
        self._smplx_pca = self.num_pca_comps < 45
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 shape coefficients
            self._layer = MANO(
                str(path), data_struct=Struct(**data), is_rhand=True, use_pca=self._smplx_pca,
                num_pca_comps=self.num_pca_comps, flat_hand_mean=False, create_global_orient=False,
                create_hand_pose=False, create_betas=False, create_transl=False,
            ).eval()
        self._num_betas = self._layer.num_betas

    def __call__(self, pose_pca: np.ndarray, betas: np.ndarray, global_orient: np.ndarray | None = None) -> HandOutput:
        """Pose ``B`` hands: ``pose_pca`` (B, P), ``betas`` (B, 10), ``global_orient`` (B, 3) axis-angle or None."""
        pose_pca = self._batch("pose_pca", pose_pca, self.num_pca_comps)
        batch = pose_pca.shape[0]
        betas = self._batch("betas", betas, self._num_betas, batch)
        if global_orient is None:
            global_orient = np.zeros((batch, 3), dtype=np.float32)
        global_orient = self._batch("global_orient", global_orient, 3, batch)
        hand_pose = pose_pca @ self._components + self._mean
        with torch.no_grad():
            smplx_pose = pose_pca if self._smplx_pca else hand_pose - self._mean
            out = self._layer(betas=torch.from_numpy(betas), global_orient=torch.from_numpy(global_orient),
                              hand_pose=torch.from_numpy(np.ascontiguousarray(smplx_pose)))
            vertices = out.vertices
            joints = torch.cat([out.joints, vertices[:, self._tips]], dim=1)[:, _TO_MANO21]
        return HandOutput(vertices=vertices.numpy(), joints=joints.numpy(), hand_pose=hand_pose.astype(np.float32))

    @staticmethod
    def _batch(name: str, value, width: int, batch: int | None = None) -> np.ndarray:
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != width or (batch is not None and array.shape[0] != batch):
            want = f"({'B' if batch is None else batch}, {width})"
            raise ValueError(f"HandModel: '{name}' should have shape {want}, found {array.shape}")
        return np.ascontiguousarray(array)
