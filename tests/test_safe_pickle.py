"""The restricted unpickler accepts plain data and refuses code without running it."""
import os
import pickle

import numpy as np
import pytest

from datasets.safe_pickle import UnsafePickleError, allow, restricted_load


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_numpy_data_loads(tmp_path):
    data = {0: {"xyz": np.arange(6, dtype=np.float32).reshape(2, 3), "name": "a"}}
    path = tmp_path / "ok.pickle"
    path.write_bytes(pickle.dumps(data, protocol=2))
    loaded = restricted_load(path)
    np.testing.assert_array_equal(loaded[0]["xyz"], data[0]["xyz"])


def test_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"x": _RunsCode(marker)}))
    with pytest.raises(UnsafePickleError, match=r"evil.pickle: refusing to load global '(posix|os)\.system'"):
        restricted_load(path)
    assert not marker.exists()


class _Plain:
    pass


def test_allow_list_maps_foreign_classes(tmp_path):
    path = tmp_path / "custom.pickle"
    path.write_bytes(pickle.dumps(_Plain()))  # refers to a global of this test module
    with pytest.raises(UnsafePickleError):
        restricted_load(path)
    loaded = restricted_load(path, allow((__name__, "_Plain", dict)))
    assert loaded == {}


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "short.pickle"
    path.write_bytes(pickle.dumps({"a": np.zeros(100)})[:40])
    with pytest.raises(pickle.UnpicklingError, match="short.pickle: not a readable pickle"):
        restricted_load(path)
