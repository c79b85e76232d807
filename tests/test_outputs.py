"""Outputs of `segment` / `boundary` that lose nothing: unique names, inputs never overwritten, a summary kept
current across runs, `--resume`, concurrent runs, and runs killed at random points (SIGKILL, SIGINT)."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image

from subobject_vlm.cli import main
from subobject_vlm.commands._outputs import plan_output_names

FAST = ["--model", "patch", "--max-tokens", "4"]  # a baseline: outputs are what these tests look at


def write_photo(path, seed=0, size=(24, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_same_names_in_two_folders_are_mirrored_not_overwritten(tmp_path):
    a, b = write_photo(tmp_path / "a" / "x.jpg", 1), write_photo(tmp_path / "b" / "x.jpg", 2)
    out = tmp_path / "out"
    assert main(["segment", str(a), str(b), "--out", str(out), "--save-labels", "npy", *FAST]) == 0
    assert {"a/x.png", "a/x.npy", "b/x.png", "b/x.npy"} <= set(files_in(out))
    records = {r["file"]: r["outputs"] for r in summary_of(out)["images"]}
    assert records == {str(a): ["a/x.png", "a/x.npy"], str(b): ["b/x.png", "b/x.npy"]}


def test_one_folder_same_stem_keeps_extensions_and_suffix_clashes_are_numbered(tmp_path):
    photos = tmp_path / "photos"
    write_photo(photos / "x.jpg", 1), write_photo(photos / "x.png", 2)
    write_photo(photos / "p.png", 3), write_photo(photos / "p_labels.png", 4)
    out = tmp_path / "out"
    assert main(["segment", str(photos), "--out", str(out), "--save-labels", "png", *FAST]) == 0
    outputs = {r["file"].split("/")[-1]: r["outputs"] for r in summary_of(out)["images"]}
    assert outputs == {
        "p.png": ["p.png", "p_labels.png"],
        "p_labels.png": ["p_labels~2.png", "p_labels~2_labels.png"],  # p's labels own p_labels.png
        "x.jpg": ["x.jpg.png", "x.jpg_labels.png"],
        "x.png": ["x.png.png", "x.png_labels.png"],
    }
    for names in outputs.values():  # every output is its own complete file
        assert Image.open(out / names[0]).mode == "RGB"
        assert Image.open(out / names[1]).mode.startswith("I")


def test_names_compare_case_insensitively():
    from pathlib import Path

    names = plan_output_names([Path("/d/X.jpg"), Path("/d/x.png")], [".png"], Path("/out"))
    assert names == ["X.jpg", "x.png"]
    names = plan_output_names([Path("/a/X.jpg"), Path("/b/x.jpg")], [".png"], Path("/out"))
    assert names == ["a/X", "b/x"]


def test_an_out_folder_holding_inputs_is_refused_and_inputs_are_never_overwritten(tmp_path, capsys):
    photos = tmp_path / "photos"
    photo = write_photo(photos / "x.png")
    before = photo.read_bytes()
    assert main(["segment", str(photos), "--out", str(photos), *FAST]) == 2
    assert "holds 1 of the inputs" in capsys.readouterr().err
    assert files_in(photos) == ["x.png"]
    assert main(["segment", str(photos), "--out", str(photos), "--allow-inputs-in-out", *FAST]) == 0
    assert photo.read_bytes() == before
    assert [r["outputs"] for r in summary_of(photos)["images"]] == [["x~2.png"]]


def test_a_file_named_twice_is_done_once(tmp_path):
    photo = write_photo(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    assert main(["segment", str(photo), str(tmp_path / "in"), "--out", str(out), *FAST]) == 0
    assert len(summary_of(out)["images"]) == 1 and files_in(out) == [
        ".subobject-vlm.active",
        ".subobject-vlm.lock",
        "summary.json",
        "x.png",
    ]


def test_a_later_run_keeps_earlier_outputs_and_records(tmp_path):
    a, b = write_photo(tmp_path / "a" / "x.jpg", 1), write_photo(tmp_path / "b" / "x.jpg", 2)
    out = tmp_path / "out"
    assert main(["segment", str(a), "--out", str(out), *FAST]) == 0
    first = (out / "x.png").read_bytes()
    assert main(["segment", str(b), "--out", str(out), *FAST]) == 0
    assert (out / "x.png").read_bytes() == first  # b's picture did not replace a's
    records = {r["file"]: r["outputs"] for r in summary_of(out)["images"]}
    assert records == {str(a): ["x.png"], str(b): ["x~2.png"]}
    assert main(["segment", str(a), "--out", str(out), *FAST]) == 0  # a keeps the name it was given
    assert {r["file"]: r["outputs"] for r in summary_of(out)["images"]} == records
    assert len(summary_of(out)["runs"]) == 3


def test_resume_skips_what_is_complete_and_redoes_what_changed(tmp_path, capsys):
    photos = tmp_path / "photos"
    for i in range(3):
        write_photo(photos / f"p{i}.png", i)
    out = tmp_path / "out"
    assert main(["segment", str(photos), "--out", str(out), "--save-labels", "npy", *FAST]) == 0
    stamps = {name: (out / name).stat().st_mtime_ns for name in ("p0.png", "p1.npy", "p2.png")}
    capsys.readouterr()
    assert main(["segment", str(photos), "--out", str(out), "--save-labels", "npy", "--resume", *FAST]) == 0
    assert "3 image(s) already done" in capsys.readouterr().err
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps

    (out / "p1.npy").unlink()  # a missing output
    write_photo(photos / "p2.png", 7)  # a changed input
    os.utime(photos / "p2.png", ns=(1, 1))
    assert main(["segment", str(photos), "--out", str(out), "--save-labels", "npy", "--resume", *FAST]) == 0
    assert "1 image(s) already done" in capsys.readouterr().err
    assert (out / "p1.npy").exists() and (out / "p0.png").stat().st_mtime_ns == stamps["p0.png"]

    # other settings: nothing counts as done
    other_settings = ["--save-labels", "npy", "--resume", "--model", "patch", "--max-tokens", "9"]
    assert main(["segment", str(photos), "--out", str(out), *other_settings]) == 0
    assert "already done" not in capsys.readouterr().err
    assert {r["tokens"] for r in summary_of(out)["images"]} == {9}


def test_boundary_resumes_too(tmp_path, capsys):
    photo = write_photo(tmp_path / "in" / "x.png")
    out = tmp_path / "maps"
    assert main(["boundary", str(photo), "--out", str(out), "--model", "gradient"]) == 0
    assert main(["boundary", str(photo), "--out", str(out), "--model", "gradient", "--resume"]) == 0
    assert "1 image(s) already done" in capsys.readouterr().err
    assert Image.open(out / "x.png").mode == "L"


def test_two_concurrent_runs_into_one_folder_lose_nothing(tmp_path):
    first = [write_photo(tmp_path / "a" / f"x{i}.png", i) for i in range(6)]
    second = [write_photo(tmp_path / "b" / f"x{i}.png", 10 + i) for i in range(6)]  # the same names
    out = tmp_path / "out"
    statuses = []

    def run(paths):
        statuses.append(main(["segment", *map(str, paths), "--out", str(out), "--save-labels", "npy", *FAST]))

    threads = [threading.Thread(target=run, args=(paths,)) for paths in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [0, 0]
    summary = summary_of(out)
    assert sorted(r["file"] for r in summary["images"]) == sorted(map(str, first + second))
    outputs = [name for r in summary["images"] for name in r["outputs"]]
    assert len(set(outputs)) == 24 and all((out / name).is_file() for name in outputs)
    for record in summary["images"]:  # each output holds its own input's segmentation
        assert np.load(out / record["outputs"][1]).shape == (24, 32)
    assert len(summary["runs"]) == 2


def test_an_unreadable_summary_is_refused_not_replaced(tmp_path, capsys):
    photo = write_photo(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("my notes")
    assert main(["segment", str(photo), "--out", str(out), *FAST]) == 2
    assert "not a summary" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == "my notes"


def _kill_and_resume(tmp_path, trial, sig, images=16):
    """Start `segment` in a subprocess, send ``sig`` at a random point after its first output, then finish
    with --resume; every input must end up done exactly once with complete outputs."""
    photos = tmp_path / f"photos{trial}"
    if not photos.exists():
        for i in range(images):
            write_photo(photos / f"p{i:02d}.png", i, size=(160, 200))
    out = tmp_path / f"out{trial}"
    options = ["--save-labels", "npy", "--model", "felzenszwalb", "--max-tokens", "16"]
    arguments = [str(photos), "--out", str(out), *options]
    command = [sys.executable, "-m", "subobject_vlm.commands.segment", *arguments]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out.glob("p*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(trial).uniform(0.0, 0.5))
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    if sig == signal.SIGINT and process.returncode != 0:  # stopped cleanly, not with a traceback
        assert process.returncode == 130 and "Traceback" not in stderr, stderr
        assert "rerun with --resume" in stderr
    assert not [p for p in out.rglob("*.npy") if p.stat().st_size == 0]
    written_before = len(list(out.glob("p*.npy")))  # where the kill landed (the summary lags by up to 1 s)

    assert main(["segment", *arguments, "--resume"]) == 0
    summary = summary_of(out)
    files = [r["file"] for r in summary["images"]]
    assert sorted(files) == sorted(str(p) for p in photos.iterdir()) and not summary["failed"]
    assert not list(out.rglob("*.tmp"))
    for record in summary["images"]:
        assert np.load(out / record["outputs"][1]).max() + 1 == record["tokens"]
        Image.open(out / record["outputs"][0]).load()  # a complete PNG
    return written_before


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_runs_resume_to_every_input_done_once(tmp_path, sig):
    for trial in range(2):
        _kill_and_resume(tmp_path, trial, sig)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["KILL", "INT", "TERM"])
def test_many_kill_points(tmp_path, sig):
    written_before = [_kill_and_resume(tmp_path, trial, sig) for trial in range(15)]
    assert len(set(written_before)) > 1  # the kills landed at different points


def test_segment_removes_only_its_own_temporaries(tmp_path):
    photo = write_photo(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    assert main(["segment", str(photo), "--out", str(out), *FAST]) == 0
    foreign = [
        out / ".git" / "objects" / "ab" / ".tmp-obj.tmp",  # another program's temporaries
        out / ".x.abc.tmp",
        out / ".git" / "objects" / "ab" / ".x.png.subobject-vlm-k2j4.tmp",  # a folder this run never wrote
    ]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    ours = out / ".x.png.subobject-vlm-a1b2c3d4.tmp"  # what a killed run left
    ours.write_bytes(b"torn")
    assert main(["segment", str(photo), "--out", str(out), "--resume", *FAST]) == 0
    assert not ours.exists()
    assert all(path.read_bytes() == b"not ours" for path in foreign)


def test_an_input_replaced_while_it_is_processed_is_redone_by_resume(tmp_path, monkeypatch, capsys):
    from subobject_vlm import image_utils

    photo = write_photo(tmp_path / "in" / "x.png", 1)
    out = tmp_path / "out"
    load_image = image_utils.load_image

    def load_then_replace(path, *args, **kwargs):
        image = load_image(path, *args, **kwargs)
        write_photo(photo, 2, size=(30, 20))  # the user saves a new version meanwhile
        return image

    monkeypatch.setattr(image_utils, "load_image", load_then_replace)
    assert main(["segment", str(photo), "--out", str(out), "--save-labels", "npy", *FAST]) == 0
    assert "x.png changed while it was read" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["segment", str(photo), "--out", str(out), "--save-labels", "npy", "--resume", *FAST]) == 0
    assert "already done" not in capsys.readouterr().err
    assert np.load(out / "x.npy").shape == (30, 20)  # the new version's segmentation


@pytest.mark.parametrize(
    "summary, field",
    [
        ({"images": ["a.jpg"]}, "images[0]"),
        ({"names": []}, "names"),
        ({"runs": 3}, "runs"),
        ({"images": [{"path": "/a.jpg", "outputs": "a.png"}]}, "images[0].outputs"),
        ({"failed": [{"path": 7}]}, "failed[0].path"),
        ({"names": {"/a.jpg": 3}}, "names['/a.jpg']"),
        ([], "the file"),
    ],
)
def test_a_summary_with_a_field_of_the_wrong_type_is_refused_in_one_line(tmp_path, capsys, summary, field):
    photo = write_photo(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(summary))
    assert main(["segment", str(photo), "--out", str(out), *FAST]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(out / "summary.json") in error and f"({field} must be" in error
    assert json.loads((out / "summary.json").read_text()) == summary


def _start_held_run(tmp_path, out, photos, *options):
    """A `segment` subprocess that holds ``out`` (it waits inside its first image until ``release`` exists)."""
    started, release = tmp_path / "started", tmp_path / "release"
    code = (
        "import sys, time, pathlib\nfrom subobject_vlm import image_utils\nfrom subobject_vlm.cli import main\n"
        "load_image = image_utils.load_image\n"
        "def held(*args, **kwargs):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.01)\n"
        "    return load_image(*args, **kwargs)\n"
        "image_utils.load_image = held\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", code, "segment", str(photos), "--out", str(out), *options]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), process.communicate()[1]
    return process, release


def test_a_second_run_with_other_settings_into_a_folder_in_use_is_refused(tmp_path):
    photos = tmp_path / "photos"
    for i in range(4):
        write_photo(photos / f"p{i}.png", i)
    out = tmp_path / "out"
    labels = ["--save-labels", "npy", "--model", "patch"]

    def segment(*options: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "subobject_vlm.cli", "segment", str(photos), "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        return subprocess.run(
            [*command, *labels, *options], env=env, capture_output=True, text=True, timeout=60
        )

    first, release = _start_held_run(tmp_path, out, photos, *labels, "--max-tokens", "4")
    second = segment("--max-tokens", "9")
    release.touch()
    assert first.wait(timeout=60) == 0
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert (
        f"--out {out} is in use by another run with other settings: it runs max_tokens=4; this run max_tokens=9;"
        in second.stderr
    )

    # records and files agree: --resume with the first run's settings trusts them, with the second's redoes all
    for tokens, already_done in (("4", True), ("9", False)):
        done = segment("--max-tokens", tokens, "--resume")
        assert done.returncode == 0 and ("4 image(s) already done" in done.stderr) == already_done
        for record in summary_of(out)["images"]:
            assert np.load(out / record["outputs"][1]).max() + 1 == record["tokens"] == int(tokens)
