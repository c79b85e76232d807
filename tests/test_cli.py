"""`subobject-vlm segment` and `subobject-vlm boundary` end to end."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from PIL import Image

from subobject_vlm.cli import main


@pytest.fixture
def image_folder(tmp_path, astronaut):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(astronaut[::4, ::4]).save(folder / "astronaut.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    Image.fromarray(astronaut[:96, :64]).save(folder / "rotated.jpg", exif=exif.tobytes())
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_segment_writes_pictures_labels_and_a_summary_and_skips_bad_files(image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(
        ["segment", str(image_folder), "--out", str(out), "--max-tokens", "20", "--save-labels", "npy"]
    )
    assert status == 1  # some files failed
    stderr = capsys.readouterr().err
    assert "corrupt.jpg" in stderr and "empty.png" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(r["file"].split("/")[-1] for r in summary["failed"]) == ["corrupt.jpg", "empty.png"]
    assert {r["file"].split("/")[-1] for r in summary["images"]} == {"astronaut.png", "rotated.jpg"}
    assert all(0 < r["tokens"] <= 20 and r["seconds"] >= 0 for r in summary["images"])
    rotated = np.load(out / "rotated.npy")
    assert rotated.dtype == np.int32 and rotated.shape == (64, 96)  # original size, EXIF-rotated
    assert Image.open(out / "astronaut.png").format == "PNG"


def test_segment_exits_zero_when_every_file_succeeds(image_folder, tmp_path):
    for bad in ("corrupt.jpg", "empty.png"):
        (image_folder / bad).unlink()
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(image_folder),
                "--out",
                str(out),
                "--save-labels",
                "png",
                "--model",
                "slic",
                "--max-tokens",
                "9",
            ]
        )
        == 0
    )
    labels = np.asarray(Image.open(out / "astronaut_labels.png"))
    assert labels.shape == (128, 128) and labels.max() + 1 == 9


def test_boundary_writes_8bit_maps_at_original_size(image_folder, tmp_path):
    out = tmp_path / "maps"
    main(["boundary", str(image_folder / "rotated.jpg"), "--out", str(out)])
    probs = Image.open(out / "rotated.png")
    assert probs.mode == "L" and probs.size == (96, 64)


def test_a_bad_model_name_is_one_clear_error(image_folder, tmp_path, capsys):
    assert (
        main(
            [
                "segment",
                str(image_folder),
                "--out",
                str(tmp_path / "out"),
                "--model",
                str(tmp_path / "missing"),
            ]
        )
        == 2
    )
    assert "missing" in capsys.readouterr().err


def test_baselines_have_no_boundary_map(image_folder, tmp_path):
    assert main(["boundary", str(image_folder), "--out", str(tmp_path), "--model", "slic"]) == 2


def test_eval_bsds_runs_from_the_command_line(bsds_root, tmp_path, capsys):
    out = tmp_path / "eval"
    status = main(
        [
            "eval-bsds",
            "--root",
            str(bsds_root),
            "--limit",
            "1",
            "--thresholds",
            "3",
            "--max-tokens",
            "8",
            "--baselines",
            "patch",
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-nms",
            "--seeds",
            "minima",
            "--min-area",
            "20",
        ]
    )
    assert status == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["boundary"]["ODS"]["f"] > 0 and (out / "pr_curve.png").exists()
    assert report["config"]["nms"] is False
    assert report["config"]["segment_options"] == {  # every EPOC option the run used, the given ones included
        "threshold": 0.1,
        "min_area": 20,
        "merge": "weakest_boundary",
        "assign": "watershed",
        "seeds": "minima",
    }
    assert "patch" in capsys.readouterr().out


def test_train_boundary_reports_a_missing_config_clearly(tmp_path, capsys):
    assert main(["train-boundary", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_train_runs_the_tiny_smoke_recipe_from_the_command_line(tmp_path):
    from conftest import REPO_ROOT

    config = REPO_ROOT / "configs" / "vlm_tiny_smoke.yaml"
    status = main(
        [
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "run"),
            "--max-steps",
            "2",
            "--no-merge",
        ]
    )
    assert status == 0
    assert any((tmp_path / "run").rglob("adapter_model.safetensors"))


def test_convert_reports_a_missing_source_clearly(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "no-such-llava"), str(tmp_path / "out")]) != 0
    assert "no-such-llava" in capsys.readouterr().err


def test_segment_output_holds_no_third_party_noise(tmp_path, capfd):
    from subobject_vlm.segmentation import api

    api._CACHE.clear()  # load the model in this command, as a first run would
    image = REPO_ROOT / "examples" / "images" / "chelsea.jpg"
    assert main(["segment", str(image), "--out", str(tmp_path), "--max-tokens", "16"]) == 0
    err = capfd.readouterr().err
    for noise in ("Loading weights", "FutureWarning", "DeprecationWarning", "not writable"):
        assert noise not in err
    assert "segmented 1 image(s)" in err


def test_inputs_are_checked_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from subobject_vlm.commands import _files

    monkeypatch.setattr(
        _files, "load_model", lambda args: pytest.fail("the model loaded before the inputs were checked")
    )
    (tmp_path / "empty").mkdir()
    assert main(["segment", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert (
        capsys.readouterr().err == f"subobject-vlm segment: error: no image files in {tmp_path / 'empty'}\n"
    )  # one line, no bar
    assert main(["boundary", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "out")]) == 2
    assert (
        capsys.readouterr().err
        == f"subobject-vlm boundary: error: input not found: {tmp_path / 'nope.jpg'}\n"
    )


def test_convert_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith("subobject-vlm convert: error:")
        and "neither an existing checkpoint folder nor a hub id" in error
    )
    assert error.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused_before_the_model_loads(tmp_path):
    import subprocess
    import sys

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code = (
        "import sys\nfrom subobject_vlm.cli import main\n"
        "status = main(sys.argv[1:])\nprint(status, 'transformers' in sys.modules)\n"
    )
    command = ["segment", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--device", "cuda:1"]
    result = subprocess.run(
        [sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["2", "False"]
    assert (
        result.stderr
        == "subobject-vlm segment: error: device 'cuda:1' is not available here (no CUDA); use cpu\n"
    )


def test_every_error_of_a_command_is_one_line_with_the_commands_name(tmp_path, capsys):
    from subobject_vlm.commands import run_as_script

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text('{"runs": 3}')
    photo, out = str(tmp_path / "a.png"), str(tmp_path / "out")
    with pytest.raises(SystemExit):  # argparse's own: a missing argument
        main(["segment", "--out", out])
    with pytest.raises(SystemExit):  # argparse's own: a value of the wrong kind
        main(["boundary", photo, "--out", out, "--resolution", "big"])
    assert main(["segment", photo, "--out", out, "--max-tokens", "0"]) == 2  # a bad value
    assert main(["segment", photo, "--out", out, "--threshold", "7"]) == 2
    assert main(["segment", photo, "--out", str(tmp_path / "bad"), "--model", "patch"]) == 2  # a bad file
    assert main(["boundary", photo, "--out", out, "--model", "slic"]) == 2
    assert main(["train-boundary", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert run_as_script("segment", [photo, "--out", out, "--threshold", "7"]) == 2  # python -m ...
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert [line.split(" error: ")[0] for line in errors] == [
        "subobject-vlm segment:",
        "subobject-vlm boundary:",
        "subobject-vlm segment:",
        "subobject-vlm segment:",
        "subobject-vlm segment:",
        "subobject-vlm boundary:",
        "subobject-vlm train-boundary:",
        "subobject-vlm segment:",
    ]


def test_segment_says_how_many_tokens_each_image_got_when_the_cap_is_not_reached(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    out = tmp_path / "out"
    command = ["segment", *(str(tmp_path / f"p{i}.png") for i in range(3)), "--out", str(out)]
    assert main([*command, "--model", "gradient", "--max-tokens", "10000"]) == 0
    tokens = [r["tokens"] for r in json.loads((out / "summary.json").read_text())["images"]]
    counts = (
        f"{min(tokens)}-{max(tokens)} tokens per image"
        if min(tokens) < max(tokens)
        else f"{tokens[0]} tokens"
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert counts in last and "--max-tokens 10000 is a cap, not reached by 3 of 3" in last
