"""``subobject-vlm precompute``: label maps equal to the processor's, shards independent of the number of workers
and ranks, resume after a kill, completeness checks at the merge, bad inputs reported in one line."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from subobject_vlm.commands import main
from subobject_vlm.data.clevr_like import generate_scene
from subobject_vlm.data.precompute import (
    check_settings,
    decode_label_map,
    encode_label_map,
    features,
    load_precomputed,
    merge_precomputed,
    open_source,
    precompute,
    read_index,
    resolve_rank,
)
from subobject_vlm.image_processing_subobject import SubobjectImageProcessor
from subobject_vlm.segmentation import SegmentationSettings, Segmenter

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
FAST = (SegmentationSettings("gradient", max_tokens=16), (32, 32))  # classical gradients: no learned weights


def write_images(folder: Path, count: int, size: int = 40) -> list[str]:
    """``count`` rendered scenes of slightly different sizes (every third in a subfolder); returns their keys."""
    keys = []
    for i in range(count):
        key = f"{'nested/' if i % 3 == 0 else ''}{i:04d}.png"
        image = generate_scene(3, "train", i, size).image[: size - i % 5]  # (H, W, 3), heights vary
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / key)
        keys.append(key)
    return sorted(keys)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("images")
    return folder, write_images(folder, 10)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("data-*.arrow"))}


def rows_by_key(out: Path) -> dict[str, dict]:
    return {row["key"]: row for row in load_precomputed(out)}


# the format


def test_label_maps_round_trip_through_16_bit_png():
    label_map = np.arange(300 * 240, dtype=np.int32).reshape(300, 240) % 65536
    assert np.array_equal(decode_label_map(encode_label_map(label_map)), label_map)
    with pytest.raises(ValueError, match="65537 regions do not fit a 16-bit PNG"):
        encode_label_map(np.full((2, 2), 65536, dtype=np.int32))


def test_settings_that_may_exceed_65536_regions_are_refused_before_any_work(images, tmp_path):
    settings = (SegmentationSettings("gradient", max_tokens=None), (300, 300))
    with pytest.raises(ValueError, match="16-bit PNGs"):
        precompute(open_source(images[0]), tmp_path / "out", settings, progress=False)
    assert not (tmp_path / "out").exists()


# equal to the processor


def test_label_maps_and_boxes_equal_the_processors_byte_for_byte(images, tmp_path):
    folder, keys = images
    settings = SegmentationSettings("default", max_tokens=16)  # the embedded boundary model, as shipped
    small = tmp_path / "three"
    for key in keys[:3]:
        (small / key).parent.mkdir(parents=True, exist_ok=True)
        (small / key).write_bytes((folder / key).read_bytes())
    precompute(open_source(small), tmp_path / "out", (settings, (32, 32)), shard_size=2, progress=False)
    processor = SubobjectImageProcessor(
        boundary_model="default", max_tokens=16, label_size={"height": 32, "width": 32}, cache_size=0
    )
    rows = rows_by_key(tmp_path / "out")
    assert sorted(rows) == keys[:3]
    for key, row in rows.items():
        expected = processor(str(small / key), return_tensors="pt")
        label_map = decode_label_map(row["label_map"])
        assert label_map.tobytes() == expected["label_maps"][0].numpy().astype(np.int32).tobytes()
        assert row["num_tokens"] == int(expected["num_tokens"][0])
        assert np.asarray(row["boxes"], np.float32).tobytes() == expected["boxes"].numpy().tobytes()
        assert (row["height"], row["width"]) == Image.open(small / key).size[::-1]


def test_the_processor_takes_precomputed_label_maps_and_segments_nothing(images, tmp_path, monkeypatch):
    folder, keys = images
    precompute(open_source(folder), tmp_path / "out", FAST, progress=False)
    processor = SubobjectImageProcessor(
        boundary_model="gradient", max_tokens=16, label_size={"height": 32, "width": 32}, cache_size=0
    )
    expected = processor(str(folder / keys[0]), return_tensors="pt")
    monkeypatch.setattr(Segmenter, "label_maps", lambda *a: pytest.fail("segmented"))
    label_map = decode_label_map(rows_by_key(tmp_path / "out")[keys[0]]["label_map"])
    given = processor(str(folder / keys[0]), label_maps=[label_map], return_tensors="pt")
    for name in ("pixel_values", "label_maps", "num_tokens", "boxes"):
        assert torch.equal(given[name], expected[name]), name
    with pytest.raises(ValueError, match=r"shape \(32, 32\)"):
        processor(str(folder / keys[0]), label_maps=[label_map[:8]])


# parallel


def test_one_and_two_workers_write_identical_shards(images, tmp_path):
    folder, _ = images
    precompute(open_source(folder), tmp_path / "one", FAST, shard_size=3, progress=False)
    precompute(open_source(folder), tmp_path / "two", FAST, shard_size=3, num_workers=2, progress=False)
    assert len(shard_bytes(tmp_path / "one")) == 4
    assert shard_bytes(tmp_path / "one") == shard_bytes(tmp_path / "two")
    assert read_index(tmp_path / "one") == read_index(tmp_path / "two")


def test_two_torchrun_ranks_write_their_shards_and_rank_0_merges_them_into_one_run(images, tmp_path):
    folder, keys = images
    options = ["--model", "gradient", "--max-tokens", "16", "--label-size", "32", "--shard-size", "3"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["-m", "subobject_vlm.commands.precompute", str(folder), "--out", str(tmp_path / "ranks")]
    result = subprocess.run(command + options, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 1: done; rank 0 merges" in result.stderr  # rank 0 merged once every rank was done
    assert json.loads((tmp_path / "ranks" / "precompute.json").read_text())["num_rows"] == len(keys)
    assert main(["precompute-merge", str(tmp_path / "ranks")]) == 0  # merging again is harmless
    precompute(open_source(folder), tmp_path / "one", FAST, shard_size=3, progress=False)
    assert shard_bytes(tmp_path / "ranks") == shard_bytes(tmp_path / "one")
    assert sorted(rows_by_key(tmp_path / "ranks")) == keys


def test_merge_names_the_shards_another_rank_has_not_written(images, tmp_path):
    folder, _ = images
    summary = precompute(
        open_source(folder), tmp_path, FAST, shard_size=3, rank=0, world_size=2, progress=False
    )
    assert summary["shards"] == 2 and "merged" not in summary  # shards 0 and 2 of 4
    with pytest.raises(ValueError, match=r"2 of 4 shards are missing .*data-00001-of-00004.arrow"):
        merge_precomputed(tmp_path)
    precompute(open_source(folder), tmp_path, FAST, shard_size=3, rank=1, world_size=2, progress=False)
    assert merge_precomputed(tmp_path)["num_rows"] == 10


def test_rank_comes_from_shard_or_torchrun_environment():
    assert resolve_rank(None, {}) == (0, 1)
    assert resolve_rank(None, {"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert resolve_rank("1/2", {}) == (1, 2)
    with pytest.raises(ValueError, match="contradicts"):
        resolve_rank("1/2", {"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="i/n"):
        resolve_rank("1-2", {})


# resumable and exact


SLOW_RUN = """
import sys, time
from subobject_vlm.data.precompute import open_source, precompute
from subobject_vlm.segmentation import SegmentationSettings
from subobject_vlm.segmentation.gradient import GradientBoundaryModel
from subobject_vlm.segmentation.registry import register_boundary_model

class Slow(GradientBoundaryModel):
    def predict(self, images):
        time.sleep(0.05)
        return super().predict(images)

register_boundary_model("slow-gradient", lambda **options: Slow())
settings = SegmentationSettings("slow-gradient", max_tokens=16)
precompute(open_source(sys.argv[1]), sys.argv[2], (settings, (32, 32)), shard_size=2, progress=False)
"""


def test_a_run_killed_mid_way_resumes_to_every_image_exactly_once(tmp_path):
    folder = tmp_path / "images"
    keys = write_images(folder, 30)
    (folder / "broken.png").write_bytes(b"not a png")
    script = tmp_path / "slow_run.py"
    script.write_text(textwrap.dedent(SLOW_RUN))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(script), str(folder), str(out)], env=ENV)
    deadline = time.monotonic() + 120
    while len(list(out.glob("data-*.arrow"))) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    made = {p.name: p.stat().st_mtime_ns for p in out.glob("data-*.arrow")}
    assert 3 <= len(made) < 16 and not (out / "precompute.json").exists()

    from subobject_vlm.segmentation.gradient import GradientBoundaryModel
    from subobject_vlm.segmentation.registry import register_boundary_model

    register_boundary_model("slow-gradient", lambda **options: GradientBoundaryModel())
    settings = (SegmentationSettings("slow-gradient", max_tokens=16), (32, 32))
    summary = precompute(open_source(folder), out, settings, shard_size=2, progress=False)
    assert summary["shards_made"] == 16 - len(made)  # complete shards are kept as they are
    assert all(p.stat().st_mtime_ns == made[p.name] for p in out.glob("data-*.arrow") if p.name in made)
    assert not list(out.glob(".*.tmp"))
    index = summary["merged"]
    assert index["num_rows"] == 30 and [f["key"] for f in index["failed"]] == ["broken.png"]
    rows = rows_by_key(out)
    assert sorted(rows) == keys  # every image exactly once
    assert all(decode_label_map(r["label_map"]).max() + 1 == r["num_tokens"] for r in rows.values())


def test_a_rerun_with_other_settings_into_the_same_folder_is_refused(images, tmp_path):
    folder, _ = images
    precompute(open_source(folder), tmp_path, FAST, progress=False)
    other = (SegmentationSettings("gradient", max_tokens=8), (32, 32))
    with pytest.raises(ValueError, match="other settings .*max_tokens: 16 != 8"):
        precompute(open_source(folder), tmp_path, other, progress=False)
    with pytest.raises(ValueError, match="shard size"):
        precompute(open_source(folder), tmp_path, FAST, shard_size=4, progress=False)
    with pytest.raises(ValueError, match="batch size"):
        precompute(open_source(folder), tmp_path, FAST, batch_size=4, progress=False)


# inputs


def test_llava_files_name_images_by_their_relative_path_once_each(images, tmp_path):
    folder, keys = images
    turns = [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "a"}]
    records = [{"image": keys[0], "conversations": turns}, {"image": f"./{keys[1]}", "conversations": turns}]
    records += [{"image": keys[0], "conversations": turns}, {"conversations": turns}, {"image": "gone.png"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    index = precompute(open_source(path, image_folder=folder), tmp_path / "out", FAST, progress=False)[
        "merged"
    ]
    assert sorted(rows_by_key(tmp_path / "out")) == sorted(keys[:2])
    assert [f["key"] for f in index["failed"]] == ["gone.png"] and "no such file" in index["failed"][0][
        "error"
    ]


def test_hf_datasets_are_keyed_by_row_or_by_a_key_column(images, tmp_path):
    import datasets

    folder, keys = images
    table = {"image": [Image.open(folder / k) for k in keys[:3]], "id": ["a", "b", "c"]}
    datasets.Dataset.from_dict(table).cast_column("image", datasets.Image()).save_to_disk(tmp_path / "ds")
    precompute(open_source(tmp_path / "ds"), tmp_path / "by-row", FAST, progress=False)
    assert sorted(rows_by_key(tmp_path / "by-row")) == ["0", "1", "2"]
    source = open_source(tmp_path / "ds", key_column="id")
    precompute(source, tmp_path / "by-id", FAST, progress=False)
    by_id = rows_by_key(tmp_path / "by-id")
    assert (
        sorted(by_id) == ["a", "b", "c"]
        and by_id["b"]["label_map"] == rows_by_key(tmp_path / "by-row")["1"]["label_map"]
    )


def test_the_output_loads_memory_mapped_and_with_the_arrow_builder(images, tmp_path):
    import datasets

    folder, keys = images
    precompute(open_source(folder), tmp_path / "out", FAST, progress=False)
    dataset = load_precomputed(tmp_path / "out")
    assert dataset.column_names == list(features()) and all(part["filename"] for part in dataset.cache_files)
    description = json.loads(dataset.info.description)
    assert description["settings"]["segmentation"]["max_tokens"] == 16
    assert description["settings"]["label_size"] == {"height": 32, "width": 32} and description["version"]
    files = str(tmp_path / "out" / "data-*.arrow")
    loaded = datasets.load_dataset("arrow", data_files=files, split="train", cache_dir=str(tmp_path / "c"))
    assert loaded["key"] == dataset["key"] == keys


def test_no_state_of_datasets_is_written_by_hand(images, tmp_path):
    folder, _ = images
    precompute(open_source(folder), tmp_path / "out", FAST, shard_size=4, progress=False)
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == [
        "data-00000-of-00003.arrow",
        "data-00001-of-00003.arrow",
        "data-00002-of-00003.arrow",
        "precompute-plan.json",
        "precompute.json",
    ]  # no state.json, no dataset_info.json: datasets makes its own state when the shards are opened


def test_a_folder_written_by_the_previous_version_still_loads_and_merges(tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(
        REPO_ROOT / "tests" / "data" / "precomputed-format-2", old
    )  # with state.json, dataset_info.json
    settings = (SegmentationSettings("gradient", max_tokens=8), (16, 16))
    assert check_settings(old, settings)["num_rows"] == 3
    dataset = load_precomputed(old)
    assert dataset["key"] == ["0.png", "1.png", "2.png"]
    assert [decode_label_map(png).shape for png in dataset["label_map"]] == [(16, 16)] * 3
    merge_precomputed(old)  # again: the stale files of datasets' state go
    assert not (old / "state.json").exists() and load_precomputed(old)["key"] == dataset["key"]


# the command


def test_command_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert main(["precompute", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().startswith("subobject-vlm precompute: error: input not found")
    assert main(["precompute", str(tmp_path), "--out", str(tmp_path / "o"), "--shard", "2/2"]) == 2
    assert "rank must be in [0, world size)" in capsys.readouterr().err
    assert main(["precompute-merge", str(tmp_path)]) == 2
    assert "not the output folder of subobject-vlm precompute" in capsys.readouterr().err


def test_label_size_help_states_the_default_the_code_uses(monkeypatch):
    import argparse

    import subobject_vlm.commands.precompute as command

    assert SubobjectImageProcessor.label_size == dict(zip(("height", "width"), command.DEFAULT_LABEL_SIZE))
    monkeypatch.setattr(command, "DEFAULT_LABEL_SIZE", (64, 48))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    (label_size,) = [action for action in parser._actions if action.dest == "label_size"]
    assert label_size.help.endswith("else 64 48)")


def test_an_unreachable_hub_dataset_fails_at_once_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    assert main(["precompute", "nobody/no-such-dataset", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("subobject-vlm precompute: error: cannot load the dataset 'nobody/no-such-dataset'")
        and "\n" not in err
    )
    assert time.monotonic() - start < 30


def test_command_writes_a_loadable_dataset_with_the_given_settings(images, tmp_path, capsys):
    folder, keys = images
    out = tmp_path / "out"
    args = ["precompute", str(folder), "--out", str(out), "--model", "patch", "--max-tokens", "4"]
    assert main([*args, "--label-size", "16", "24"]) == 0
    assert json.loads(capsys.readouterr().out) == {"num_images": 10, "num_rows": 10, "num_failed": 0}
    rows = rows_by_key(out)
    assert sorted(rows) == keys and decode_label_map(rows[keys[0]]["label_map"]).shape == (16, 24)
    assert read_index(out)["settings"]["segmentation"]["boundary_model"] == "patch"


# memory


BOUNDED_RUN = """
import json, resource, sys
from pathlib import Path
import cv2
import numpy as np
from subobject_vlm.data.precompute import open_source, precompute
from subobject_vlm.segmentation import SegmentationSettings

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
settings = (SegmentationSettings("patch", max_tokens=16), (32, 32))
peaks = {}
for count in (200, 3000):  # a warm-up run (imports, first shards), then 15 times as many images
    folder = root / f"images-{count}"
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:05d}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    summary = precompute(open_source(folder), root / f"out-{count}", settings, shard_size=100, progress=False)
    assert summary["merged"]["num_rows"] == count
    peaks[count] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps(peaks))
"""


@pytest.mark.slow  # ~15 s of CPU: 3200 images written and tokenized
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_memory_stays_bounded_over_thousands_of_images(tmp_path):
    script = tmp_path / "bounded_run.py"
    script.write_text(textwrap.dedent(BOUNDED_RUN))
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=ENV, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    peaks = {int(k): v for k, v in json.loads(result.stdout).items()}
    print(
        f"peak RSS after 200 images {peaks[200] / 1024:.1f} MiB, after 3000 more {peaks[3000] / 1024:.1f} MiB"
    )
    # holding every (32, 32) int32 label map would add 2800 * 4 KiB = 11 MiB; measured here: about 1 MiB
    assert peaks[3000] - peaks[200] < 8 * 1024


def test_an_unreachable_hub_is_named_in_seconds_without_retries(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(OSError, match=r"the Hugging Face Hub \(http://127.0.0.1:9\) is unreachable"):
        open_source("nobody/no-such-dataset").entries()


@pytest.mark.parametrize("num_workers", [1, 2])
def test_a_boundary_model_that_cannot_load_stops_the_run_in_one_line(images, tmp_path, num_workers):
    folder, _ = images
    settings = (SegmentationSettings(str(tmp_path), max_tokens=16), (32, 32))  # a folder without a checkpoint
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        precompute(open_source(folder), tmp_path / "out", settings, num_workers=num_workers, progress=False)
    assert not list((tmp_path / "out").glob("data-*.arrow"))


def test_command_takes_the_settings_of_a_saved_processor_and_overrides_them(images, tmp_path, capsys):
    folder, _ = images
    saved = SubobjectImageProcessor(
        boundary_model="patch", max_tokens=9, label_size={"height": 24, "width": 16}
    )
    saved.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["precompute", str(folder), "--out", str(out), "--processor", str(tmp_path / "ckpt")]) == 0
    assert read_index(out)["settings"] == {
        "segmentation": {**SegmentationSettings("patch", max_tokens=9).to_dict()},
        "label_size": {"height": 24, "width": 16},
    }
    override = ["--processor", str(tmp_path / "ckpt"), "--max-tokens", "4"]
    assert main(["precompute", str(folder), "--out", str(tmp_path / "o2"), *override]) == 0
    assert read_index(tmp_path / "o2")["settings"]["segmentation"]["max_tokens"] == 4


# workers and signals

KILLABLE_RUN = """
import sys, time
from subobject_vlm.commands import main
from subobject_vlm.segmentation.gradient import GradientBoundaryModel
from subobject_vlm.segmentation.registry import register_boundary_model

class Slow(GradientBoundaryModel):
    def predict(self, images):
        time.sleep(0.3)
        return super().predict(images)

register_boundary_model("slow-gradient", lambda **options: Slow())  # in the spawned workers too (__mp_main__)
if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:  # the command line's own runner turns it into one line and status 130
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
"""


def start_killable_run(tmp_path: Path, busy: bool) -> tuple[subprocess.Popen, Path, list]:
    """``precompute --num-workers 2`` of 40 slow images in its own process group (stderr in ``tmp_path/err``),
    returned once both workers are started (``busy``: once they have written shards), with its output folder
    and its worker processes (psutil)."""
    import psutil

    folder = tmp_path / "images"
    write_images(folder, 40, size=16)
    script = tmp_path / "killable_run.py"
    script.write_text(textwrap.dedent(KILLABLE_RUN))
    out = tmp_path / "out"
    options = ["--model", "slow-gradient", "--max-tokens", "4", "--label-size", "8", "--shard-size", "1"]
    command = [
        sys.executable,
        str(script),
        "precompute",
        str(folder),
        "--out",
        str(out),
        "--num-workers",
        "2",
    ]
    with open(tmp_path / "err", "w") as err:  # a file, not a pipe: orphaned workers would hold a pipe open
        process = subprocess.Popen(command + options, env=ENV, stderr=err, start_new_session=True)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 120

    def workers() -> list:
        found = []
        for child in parent.children():
            with contextlib.suppress(psutil.Error):  # e.g. a process that has just ended
                if "--multiprocessing-fork" in child.cmdline():
                    found.append(child)
        return found

    while process.poll() is None and time.monotonic() < deadline:
        if len(workers()) == 2 and (not busy or len(list(out.glob("data-*.arrow"))) >= 2):
            break
        time.sleep(0.05)
    assert process.poll() is None, (tmp_path / "err").read_text()[-3000:]
    return process, out, workers()


def survivors(workers: list, seconds: float) -> list:
    """The processes of ``workers`` still running (not zombies) after up to ``seconds``; killed, so that a failing
    test leaves none behind."""
    import psutil

    deadline = time.monotonic() + seconds
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    for worker in alive:
        worker.kill()
    return alive


@pytest.mark.parametrize(
    "signal_, busy",  # SIGKILL once the workers make shards: they must notice their parent is gone by themselves
    [(signal.SIGTERM, False), (signal.SIGKILL, True)],
    ids=["SIGTERM", "SIGKILL"],
)
def test_no_worker_outlives_its_parent_by_10_seconds(tmp_path, signal_, busy):
    process, out, workers = start_killable_run(tmp_path, busy)
    process.send_signal(signal_)
    try:
        process.wait(timeout=60)
    finally:
        assert survivors(workers, 10) == []
    assert process.returncode in (128 + signal_, -signal_)
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err, err[-3000:]
    assert (
        signal_ == signal.SIGKILL
        or "stopped by SIGTERM; complete shards are kept" in err.strip().splitlines()[-1]
    )
    kept = list(out.glob("data-*.arrow"))
    assert len(kept) < 40 and all(
        shard_is_readable(path) for path in kept
    )  # stopped mid-run, complete shards kept


def test_ctrl_c_while_workers_start_stops_them_without_tracebacks(tmp_path):
    process, out, workers = start_killable_run(tmp_path, busy=False)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: to the whole process group
    try:
        process.wait(timeout=60)
    finally:
        assert survivors(workers, 10) == []
    err = (tmp_path / "err").read_text()
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert not list(out.glob(".*.tmp"))


def shard_is_readable(path: Path) -> bool:
    import pyarrow as pa

    with pa.OSFile(str(path), "rb") as handle:
        return pa.ipc.open_stream(handle).read_all().num_rows == 1


# odd inputs


def test_a_file_name_that_is_not_utf8_is_a_named_failure_and_the_rest_is_made(tmp_path):
    folder = tmp_path / "images"
    keys = write_images(folder, 2)
    with open(os.fsencode(folder) + b"/bad\xff.png", "wb") as handle:  # a name that is not UTF-8
        handle.write((folder / keys[0]).read_bytes())
    index = precompute(open_source(folder), tmp_path / "out", FAST, progress=False)["merged"]
    assert index["num_rows"] == 2 and [f["key"] for f in index["failed"]] == ["bad\\xff.png"]
    assert "not valid UTF-8" in index["failed"][0]["error"]


def llava_file(tmp_path: Path, images: list) -> Path:
    turns = [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "a"}]
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"image": image, "conversations": turns} for image in images]))
    return path


def test_llava_records_with_a_list_of_images_precompute_each_image_once(images, tmp_path, capsys):
    folder, keys = images
    path = llava_file(tmp_path, [[keys[0], keys[1]], [keys[1]], keys[2], [keys[0]]])
    command = ["precompute", str(path), "--image-folder", str(folder), "--out", str(tmp_path / "out")]
    assert main([*command, "--model", "patch", "--max-tokens", "4", "--label-size", "8"]) == 0
    assert json.loads(capsys.readouterr().out) == {"num_images": 3, "num_rows": 3, "num_failed": 0}
    assert sorted(rows_by_key(tmp_path / "out")) == keys[:3]


@pytest.mark.parametrize("image", [5, {"path": "a.png"}, ["a.png", 3]], ids=["int", "dict", "list-with-int"])
def test_llava_records_whose_image_is_not_a_file_name_are_refused_in_one_line(
    images, tmp_path, capsys, image
):
    folder, keys = images
    path = llava_file(tmp_path, [keys[0], image])
    command = ["precompute", str(path), "--image-folder", str(folder), "--out", str(tmp_path / "out")]
    assert main([*command, "--model", "patch"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        f"{path}: record 1: 'image' must be an image file name or a list of them" in err and "\n" not in err
    )


@pytest.mark.parametrize(
    "option", ["--threads", "--num-workers", "--shard-size", "--batch-size"], ids=lambda o: o[2:]
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_run_numbers_below_one_are_refused_in_one_line(images, tmp_path, capsys, option, value):
    folder, _ = images
    assert (
        main(["precompute", str(folder), "--out", str(tmp_path / "o"), "--model", "patch", option, value])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{option} must be a positive integer, got {value}") and "\n" not in err
    assert not (tmp_path / "o").exists()


# reruns: what changed since is redone


def replace_image(path: Path, source: Path) -> None:
    """Write ``source``'s pixels over ``path``, its modification time moved on (as a later edit would)."""
    path.write_bytes(source.read_bytes())
    later = path.stat().st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_a_rerun_redoes_an_image_replaced_since_and_only_its_shard(tmp_path):
    folder = tmp_path / "images"
    keys = write_images(folder, 4)
    out = tmp_path / "out"
    precompute(open_source(folder), out, FAST, shard_size=2, progress=False)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("data-*.arrow")}
    replace_image(folder / keys[1], folder / keys[3])
    summary = precompute(open_source(folder), out, FAST, shard_size=2, progress=False)
    assert summary["shards_made"] == 1 and summary["images_made"] == 1  # the unchanged image's row is kept
    assert summary["redone"] == [
        f"data-00000-of-00002.arrow: 1 image(s) changed since it was made ({keys[1]})"
    ]
    rows = rows_by_key(out)
    assert rows[keys[1]]["label_map"] == rows[keys[3]]["label_map"]  # the new pixels' label map
    fresh = tmp_path / "fresh"
    precompute(open_source(folder), fresh, FAST, shard_size=2, progress=False)
    assert shard_bytes(out) == shard_bytes(fresh)  # as if made now, the dataset consistent
    assert (out / "data-00001-of-00002.arrow").stat().st_mtime_ns == before["data-00001-of-00002.arrow"][1]


def test_a_rerun_makes_the_label_map_of_an_image_repaired_since(tmp_path):
    folder = tmp_path / "images"
    keys = write_images(folder, 3)
    good = (folder / keys[0]).read_bytes()
    (folder / keys[0]).write_bytes(b"broken")
    out = tmp_path / "out"
    assert precompute(open_source(folder), out, FAST, progress=False)["merged"]["num_failed"] == 1
    replace_image(folder / keys[0], folder / keys[1])
    (folder / keys[0]).write_bytes(good)
    index = precompute(open_source(folder), out, FAST, progress=False)["merged"]
    assert index["num_rows"] == 3 and index["failed"] == []


def test_a_rerun_redoes_a_shard_cut_short_and_says_so(images, tmp_path, capsys):
    folder, keys = images
    out = tmp_path / "out"
    command = ["precompute", str(folder), "--out", str(out), "--model", "patch", "--max-tokens", "4"]
    assert main([*command, "--label-size", "8", "--shard-size", "4"]) == 0
    shard = out / "data-00001-of-00003.arrow"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    capsys.readouterr()
    assert main([*command, "--label-size", "8", "--shard-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "3 shard(s), 1 made now" in err and f"redid {shard.name}: unreadable" in err
    assert sorted(rows_by_key(out)) == keys


def test_merge_names_a_shard_cut_short(images, tmp_path, capsys):
    folder, _ = images
    precompute(open_source(folder), tmp_path, FAST, shard_size=4, progress=False)
    shard = tmp_path / "data-00002-of-00003.arrow"
    shard.write_bytes(shard.read_bytes()[:-100])
    assert main(["precompute-merge", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{shard} is unreadable" in err and "rerun precompute" in err and "\n" not in err


@pytest.mark.parametrize(
    "plan, field",
    [
        ({}, "'format' is missing"),
        ([], "expected a JSON object, got list"),
        ("num_shards", "'num_shards' must be"),
    ],
    ids=["empty-object", "list", "wrong-type"],
)
def test_a_plan_that_is_not_one_is_refused_in_one_line_naming_the_file_and_field(
    images, tmp_path, capsys, plan, field
):
    folder, _ = images
    precompute(open_source(folder), tmp_path, FAST, shard_size=4, merge=False, progress=False)
    path = tmp_path / "precompute-plan.json"
    if isinstance(plan, str):  # one field of the right name and the wrong type
        plan = {**json.loads(path.read_text()), plan: "3"}
    path.write_text(json.dumps(plan))
    merge = ["precompute-merge", str(tmp_path)]
    rerun = ["precompute", str(folder), "--out", str(tmp_path), "--model", "gradient", "--max-tokens", "16"]
    for command in (merge, [*rerun, "--label-size", "32", "--shard-size", "4"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert str(path) in err and field in err and "\n" not in err, err
