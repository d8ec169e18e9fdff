"""Atomic writes: the final name only ever holds a complete file."""
import pytest

from datasets.atomic import atomic_write, write_text_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    final = write_text_atomic(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_write(final) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_successful_write_replaces_and_creates_parents(tmp_path):
    final = tmp_path / "sub" / "b.txt"
    with atomic_write(final) as temporary:
        assert temporary.name.startswith(".b.txt.tmp-")
        temporary.write_text("new")
    assert final.read_text() == "new"
    assert [p.name for p in final.parent.iterdir()] == ["b.txt"]
