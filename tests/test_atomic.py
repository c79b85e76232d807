"""Atomic writes: the final name holds the old or the complete new content, never a torn file."""

import json

import numpy as np
import pytest
from PIL import Image

from subobject_vlm.atomic import atomic_open, remove_stale_temporaries, save_image, save_npy, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write('{"torn": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_round_trips_and_stale_temporaries(tmp_path):
    save_npy(tmp_path / "x.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    assert np.load(tmp_path / "x.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    save_image(tmp_path / "x.png", Image.new("I;16", (3, 2), 40000))
    assert np.asarray(Image.open(tmp_path / "x.png")).max() == 40000
    (tmp_path / ".x.png.subobject-vlm-abc_12.tmp").write_bytes(b"torn")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".x.png.subobject-vlm-abc_12.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.png"]


def test_a_killed_write_leaves_a_temporary_that_names_this_package(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "unlink", lambda path: None)  # as if killed before the clean-up
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "x.png") as handle:
            handle.write(b"torn")
            raise RuntimeError("killed mid-write")
    monkeypatch.undo()
    [left] = tmp_path.iterdir()
    assert left.name.startswith(".x.png.subobject-vlm-") and left.name.endswith(".tmp")
    assert remove_stale_temporaries(tmp_path) == [left]


def test_stale_temporary_removal_spares_other_programs_files_and_subfolders(tmp_path):
    foreign = [
        tmp_path / ".x.abc.tmp",
        tmp_path / ".swap.tmp",
        tmp_path / "objects" / ".x.subobject-vlm-a.tmp",
    ]
    for path in foreign:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not ours")
    ours = tmp_path / ".x.png.subobject-vlm-q1w2e3r4.tmp"
    ours.write_bytes(b"torn")
    assert remove_stale_temporaries(tmp_path, ["y.png"]) == []  # another destination's
    assert remove_stale_temporaries(tmp_path) == [ours]
    assert all(path.exists() for path in foreign)


def test_refuses_append_mode(tmp_path):
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(tmp_path / "x", "ab"):
            pass


def test_files_get_the_mode_a_plain_open_gives(tmp_path):
    import os

    write_json(tmp_path / "atomic.json", {})
    (tmp_path / "plain.json").write_text("{}")
    assert os.stat(tmp_path / "atomic.json").st_mode == os.stat(tmp_path / "plain.json").st_mode
