"""The mano21 layout and name-derived permutations."""
import numpy as np
import pytest

from datasets import joints


def test_mano21_indices_follow_the_documented_rule():
    for f, finger in enumerate(joints.FINGERS):
        assert joints.MANO21[1 + 4 * f] == f"{finger}_mcp"
        assert joints.MANO21[4 + 4 * f] == f"{finger}_tip"
    assert joints.MANO21[0] == "wrist" and len(joints.MANO21) == 21


def test_mano_plus_tips_permutation_equals_the_published_list():
    # manopth / HaMeR `mano_to_openpose` (datasets.md §5), checked here, derived in code from names.
    published = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
    np.testing.assert_array_equal(joints.permutation(joints.MANO16_WITH_TIPS), published)


def test_permutation_round_trip_and_missing_names():
    forward = joints.permutation(joints.MANO16_WITH_TIPS, joints.MANO21)
    backward = joints.permutation(joints.MANO21, joints.MANO16_WITH_TIPS)
    x = np.arange(21)
    np.testing.assert_array_equal(x[forward][backward], x)
    with pytest.raises(KeyError, match="thumb_tip"):
        joints.permutation(joints.MANO16)


def test_bones_form_a_tree_rooted_at_the_wrist():
    children = [b for _, b in joints.BONES]
    assert sorted(children) == sorted(n for n in joints.MANO21 if n != "wrist")
    for parent, child in joints.BONES:
        assert joints.MANO21.index(parent) < joints.MANO21.index(child)
    for name, parent in joints.MANO16_PARENTS.items():
        if parent is not None:
            assert (parent, name) in joints.BONES


def test_root_and_scale():
    j = np.zeros((2, 21, 3))
    j[:, 0] = [1, 2, 3]
    j[:, 10] = [0, 0.03, 0.04]
    root, scale = joints.root_and_scale(j)
    np.testing.assert_allclose(root, [[1, 2, 3]] * 2)
    np.testing.assert_allclose(scale, [0.05, 0.05])
