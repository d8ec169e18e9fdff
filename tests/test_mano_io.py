"""MANO-format file I/O: chumpy-free pickle loading, refusal of code, npz validation and writing."""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from datasets.safe_pickle import UnsafePickleError
from render.hand_model import EMBEDDED_MODEL, HandModel
from render.open_hand.build import VERSION
from render.mano_io import ManoFileError, load_mano, load_mano_npz, load_mano_pkl, save_mano_npz
from tools import convert_mano


def _fake_chumpy_modules():
    """Modules named like chumpy's, with classes that pickle their state like chumpy does."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()
            self._itr = None

        def __getstate__(self):  # chumpy pickles __dict__ without its caches
            return dict(self.__dict__)

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, np.asarray(idxs), preferred_shape

        def __getstate__(self):
            return dict(self.__dict__)

    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")
    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch, reordering.Select = Ch, Select
    package = types.ModuleType("chumpy")
    package.ch, package.reordering = ch, reordering
    return {"chumpy": package, "chumpy.ch": ch, "chumpy.reordering": reordering}, Ch, Select


def write_chumpy_pickle(path, data, protocol=2):
    """Pickle ``data`` the way the official MANO file holds it: chumpy objects and a CSC regressor.

    The fake chumpy modules exist in ``sys.modules`` only while dumping.
    """
    modules, Ch, Select = _fake_chumpy_modules()
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        content = dict(data)
        content["shapedirs"] = Ch(data["shapedirs"])
        content["v_template"] = Ch(data["v_template"])
        mean = np.asarray(data["hands_mean"], dtype=np.float64)
        content["hands_mean"] = Select(Ch(mean[::-1].copy()), np.arange(45)[::-1], (45,))
        content["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
        content["bs_style"] = "lbs"
        with open(path, "wb") as f:
            pickle.dump(content, f, protocol=protocol)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def embedded():
    return load_mano_npz(EMBEDDED_MODEL)


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pickle_round_trips_through_convert_tool(tmp_path, embedded, protocol):
    pkl = tmp_path / "MANO_RIGHT.pkl"
    write_chumpy_pickle(pkl, embedded, protocol=protocol)
    assert "chumpy" not in sys.modules
    raw = pkl.read_bytes()
    assert b"chumpy.ch" in raw and b"csc" in raw  # the file really references those classes
    out = tmp_path / "MANO_RIGHT.npz"
    assert convert_mano.main([str(pkl), "--out", str(out)]) == 0
    converted = load_mano_npz(out)
    for key, value in embedded.items():
        np.testing.assert_array_equal(converted[key].astype(value.dtype), value, err_msg=key)
    assert str(converted["bs_style"]) == "lbs"
    assert "chumpy" not in sys.modules  # loading never imported chumpy


def test_hand_model_reads_a_mano_pickle_like_the_npz(tmp_path, embedded):
    pkl = tmp_path / "MANO_RIGHT.pkl"
    write_chumpy_pickle(pkl, embedded)
    rng = np.random.default_rng(3)
    pose, betas = rng.uniform(-2, 2, (4, 10)), rng.uniform(-1, 1, (4, 10))
    from_pkl = HandModel(pkl)(pose, betas)
    from_npz = HandModel()(pose, betas)
    np.testing.assert_allclose(from_pkl.vertices, from_npz.vertices, atol=1e-6)
    np.testing.assert_allclose(from_pkl.joints, from_npz.joints, atol=1e-6)
    digest = hashlib.sha256(pkl.read_bytes()).hexdigest()[:16]
    assert HandModel(pkl).identity == f"open-hand v{VERSION} (sha256:{digest})"  # identity names the file actually read


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"v_template": _RunsCode(marker)}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="evil.pkl.*system"):
        load_mano_pkl(path)
    assert not marker.exists()
    assert convert_mano.main([str(path), "--out", str(tmp_path / "x.npz")]) == 2
    assert not marker.exists() and not (tmp_path / "x.npz").exists()


def test_reconstructor_refuses_classes_that_are_not_stand_ins(tmp_path):
    # Protocol 0 spelling of copyreg._reconstructor(numpy.ndarray, object, None): a real class, not data.
    payload = b"(dp0\nS'x'\np1\nccopy_reg\n_reconstructor\np2\n(cnumpy\nndarray\np3\nc__builtin__\nobject\np4\nNtp5\nRp6\ns."
    path = tmp_path / "trick.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError):
        load_mano_pkl(path)


def test_missing_and_misshaped_keys_are_named(tmp_path, embedded):
    broken = dict(embedded)
    del broken["weights"]
    path = tmp_path / "broken.npz"
    np.savez(path, **broken)
    with pytest.raises(ManoFileError, match=r"broken\.npz.*missing MANO key.*weights"):
        load_mano_npz(path)
    bad = dict(embedded)
    bad["hands_mean"] = np.zeros(44)
    np.savez(path, **bad)
    with pytest.raises(ManoFileError, match=r"broken\.npz.*'hands_mean'.*\(45\).*\(44,\)"):
        load_mano(path)


def test_npz_with_pickled_objects_is_refused(tmp_path, embedded):
    path = tmp_path / "objects.npz"
    data = dict(embedded)
    data["f"] = np.array([object()] * 3, dtype=object)
    np.savez(path, **data)
    with pytest.raises(ManoFileError, match="objects.npz"):
        load_mano_npz(path)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(ManoFileError, match="unknown model file type"):
        load_mano(tmp_path / "hand.obj")
    with pytest.raises(ManoFileError, match="not found"):
        load_mano(tmp_path / "MANO_RIGHT.pkl")


def test_save_is_deterministic_and_leaves_no_temporary(tmp_path, embedded):
    a, b = tmp_path / "a.npz", tmp_path / "sub" / "b.npz"
    save_mano_npz(a, embedded)
    save_mano_npz(b, dict(reversed(list(embedded.items()))))
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.npz", "b.npz"]
    with pytest.raises(ManoFileError):
        save_mano_npz(tmp_path / "c.npz", {"f": embedded["f"]})
    assert not (tmp_path / "c.npz").exists()
