"""compare-tokenizers as a grid: torch threads, a progress line with ETA and a quiet log, runs evaluated again
from saved weights, runs sharing identical label maps, accuracy per attribute group, the reference tokenizer,
resized images, one Segmenter for every budget, figures with intervals, reports merged from split runs."""

import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy import stats
from test_token_efficiency import toy_config
from test_token_efficiency_own_data import run_command, user_config, write_user_data

from subobject_vlm.cli import main
from subobject_vlm.evaluation import token_efficiency
from subobject_vlm.evaluation.token_efficiency import compare_tokenizers, load_config, load_split
from subobject_vlm.evaluation.token_efficiency.run import MAX_EPOCHS
from subobject_vlm.evaluation.token_efficiency.train import train_run

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def read_runs(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]


def counting_train_run(calls: list):
    """``train_run`` that records the torch threads each training ran with."""

    def wrapped(*args, **kwargs):
        calls.append(torch.get_num_threads())
        return train_run(*args, **kwargs)

    return wrapped


def no_training(*args, **kwargs):
    raise AssertionError("a run was trained")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The toy grid (patch and ours at 4 tokens, 2 seeds) through the command, stderr not a terminal, torch set
    to 2 threads beforehand: output folder, stderr, the threads each training ran with, torch's threads after."""
    folder = tmp_path_factory.mktemp("grid")
    config_path = folder / "compare.yaml"
    config_path.write_text(yaml.safe_dump(toy_config(str(folder / "out"), seeds=[0, 1])))
    calls: list[int] = []
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(token_efficiency.run, "train_run", counting_train_run(calls))
        torch.set_num_threads(2)
        try:
            status, stderr = run_command(config_path, folder)
            after = torch.get_num_threads()
        finally:
            torch.set_num_threads(before)
    assert status == 0, stderr
    return folder / "out", stderr, calls, after


def test_the_cpu_default_is_one_torch_thread_said_by_the_command_and_restored_after(grid):
    _, stderr, calls, after = grid
    assert calls == [1, 1, 1, 1] and after == 2
    [line] = [line for line in stderr.splitlines() if "torch thread" in line]
    assert (
        line.startswith("compare-tokenizers: 1 torch thread (the default on the CPU)")
        and "torch_threads" in line
    )


def test_each_run_prints_one_progress_line_with_the_grids_count_elapsed_time_and_eta(grid):
    _, stderr, _, _ = grid
    lines = [line for line in stderr.splitlines() if line.startswith("compare-tokenizers: [")]
    assert [line.split("]")[0] for line in lines] == [f"compare-tokenizers: [{n}/4" for n in range(1, 5)]
    assert all("trained in" in line and " elapsed, ETA " in line for line in lines)
    assert lines[-1].endswith("ETA 0s")
    assert "4 runs: 4 to train, 0 to evaluate" in stderr


def test_the_log_has_no_carriage_return_progress_bars_off_a_terminal(grid):
    _, stderr, _, _ = grid
    assert "\r" not in stderr and "it/s" not in stderr and "step/s" not in stderr


def test_the_built_in_scenes_report_accuracy_per_attribute_group(grid):
    out_dir, _, _, _ = grid
    for run in read_runs(out_dir):
        groups = run["attribute_accuracy_by_group"]
        assert list(groups) == ["count", "size", "material", "colour", "shape"]
        assert all(value is None or 0.0 <= value <= 1.0 for value in groups.values())
    table = (out_dir / "results.md").read_text()
    assert (
        "## Attribute accuracy per group" in table and "| count | size | material | colour | shape |" in table
    )


def test_each_run_saves_its_final_weights(grid):
    out_dir, _, _, _ = grid
    weights = sorted(path.name.split("-")[:3] for path in (out_dir / "weights").glob("*.pt"))
    assert weights == [
        ["ours", "4", "seed0"],
        ["ours", "4", "seed1"],
        ["patch", "4", "seed0"],
        ["patch", "4", "seed1"],
    ]


def test_the_figures_show_95_percent_intervals_over_seeds(tmp_path, monkeypatch):
    from subobject_vlm.evaluation.token_efficiency import plots

    figures = {}
    monkeypatch.setattr(plots, "save_figure", lambda path, fig, **kw: figures.__setitem__(path.name, fig))
    losses = [0.50, 0.56, 0.53]
    runs = [
        {
            "tokenizer": "ours",
            "budget": 16,
            "seed": s,
            "mean_tokens": 14.0,
            "val_loss": loss,
            "val_perplexity": math.exp(loss),
            "attribute_accuracy": 0.4,
            "accuracy": None,
            "curve": [[10, 1.0, loss + 0.1], [20, 2.0, loss]],
        }
        for s, loss in enumerate(losses)
    ]
    paths = plots.plot_token_efficiency(runs, tmp_path)
    assert [path.name for path in paths] == list(figures)
    perplexity = np.exp(losses)
    half = stats.t.ppf(0.975, 2) * perplexity.std(ddof=1) / math.sqrt(3)
    [bar] = figures["perplexity_vs_tokens.png"].axes[0].collections  # the error bar's line segments
    [segment] = bar.get_segments()
    assert segment[:, 1] == pytest.approx([perplexity.mean() - half, perplexity.mean() + half])
    [band] = figures["val_loss_vs_steps.png"].axes[0].collections
    low = band.get_paths()[0].vertices[:, 1].min()
    assert low == pytest.approx(
        np.mean(losses) - stats.t.ppf(0.975, 2) * np.std(losses, ddof=1) / math.sqrt(3)
    )


def test_other_attribute_words_rerun_only_the_evaluation_from_the_saved_weights(tmp_path, monkeypatch):
    write_user_data(tmp_path / "project")
    config = user_config("out")
    config_path = tmp_path / "project" / "compare.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert run_command(config_path, tmp_path)[0] == 0
    [trained] = read_runs(tmp_path / "out")
    assert "attribute_accuracy_by_group" in trained and trained["attribute_accuracy_by_group"] == {}

    groups = {"vertical": ["top", "bottom"], "horizontal": ["left", "right"]}
    config["data"]["attribute_groups"] = groups
    config["data"]["attribute_words"] = ["top"]
    config_path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(token_efficiency.run, "train_run", no_training)
    status, stderr = run_command(config_path, tmp_path)
    assert status == 0 and "evaluated from its saved weights" in stderr
    first, again = read_runs(tmp_path / "out")
    assert again["curve"] == first["curve"] and again["evaluation_key"] != first["evaluation_key"]
    assert sorted(again["attribute_accuracy_by_group"]) == ["horizontal", "vertical"]
    monkeypatch.undo()

    config["output_dir"] = str(tmp_path / "fresh")  # the same settings trained from scratch: the same metrics
    config_path.write_text(yaml.safe_dump(config))
    assert run_command(config_path, tmp_path)[0] == 0
    [fresh] = read_runs(tmp_path / "fresh")
    for key in ("val_loss", "attribute_accuracy", "attribute_accuracy_by_group"):
        assert again[key] == pytest.approx(fresh[key])
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| horizontal | vertical |" in table


def test_budgets_with_identical_label_maps_train_once_and_are_reported_for_both(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(token_efficiency.run, "train_run", counting_train_run(calls))
    threshold = {
        "boundary_model": "default",
        "seeds": "threshold",
        "boundary_model_options": {"resolution": 64},
    }
    config = toy_config(tmp_path, tokenizers={"ours-threshold": threshold}, budgets=[16, 64])
    compare_tokenizers(config)  # 32 px scenes: threshold seeds close 3-8 regions, never 16
    assert len(calls) == 1
    first, second = read_runs(tmp_path)
    assert (first["budget"], second["budget"], second["same_as"]) == (16, 64, "ours-threshold@16")
    assert second["val_loss"] == first["val_loss"] and second["mean_tokens"] == first["mean_tokens"]
    assert (
        "ours-threshold @ 64: label maps identical to ours-threshold @ 16"
        in (tmp_path / "results.md").read_text()
    )


def hand_written_results(config: dict, seeds=(0, 1, 2)) -> list[dict]:
    """results.jsonl lines of ``config``'s experiment (no training): ours ahead of patch by 0.1 +- noise."""
    from subobject_vlm.evaluation.token_efficiency import experiment_fingerprint
    from subobject_vlm.evaluation.token_efficiency.data import settings_digest

    fingerprint = experiment_fingerprint(load_config(config))
    lines = []
    for name, base in (("patch", 0.3), ("ours", 0.4)):
        for seed in seeds:
            accuracy = base + 0.01 * seed * (1 if name == "ours" else 2)
            lines.append(
                {
                    "tokenizer": name,
                    "budget": 4,
                    "seed": seed,
                    "mean_tokens": 4.0,
                    "val_loss": 0.5,
                    "best_val_loss": 0.5,
                    "best_step": 4,
                    "val_perplexity": math.exp(0.5),
                    "accuracy": None,
                    "attribute_accuracy": accuracy,
                    "attribute_accuracy_by_group": {"colour": accuracy},
                    "step_seconds": 0.05,
                    "wall_seconds": 5.0,
                    "curve": [[4, 0.2, 0.5]],
                    "fingerprint": fingerprint,
                    "tokenizer_key": settings_digest(config["tokenizers"][name]),
                }
            )
    return lines


def test_paired_comparisons_are_against_the_reference_tokenizer_of_the_config(tmp_path):
    config = toy_config(tmp_path, reference_tokenizer="patch")
    (tmp_path / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in hand_written_results(config))
    )
    config_path = tmp_path / "compare.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert main(["compare-tokenizers", "--config", str(config_path), "--report-only"]) == 0
    table = (tmp_path / "results.md").read_text()
    assert "## Paired comparisons against patch at equal budgets" in table
    row, group_row = [line for line in table.splitlines() if line.startswith("| ours | patch | 4 |")]
    assert "+0.090 [" in row and group_row.startswith("| ours | patch | 4 | +0.090 [")  # ours minus patch


def test_a_reference_tokenizer_that_is_not_in_the_grid_is_a_config_error(tmp_path):
    with pytest.raises(
        token_efficiency.config.ConfigError, match="reference_tokenizer: 'slic' is not one of"
    ):
        load_config(toy_config(tmp_path, reference_tokenizer="slic"))


def test_report_only_merges_the_results_of_split_runs_without_training_or_segmenting(tmp_path, monkeypatch):
    config = toy_config(tmp_path)
    lines = hand_written_results(config)
    machine_a = "".join(json.dumps(r) + "\n" for r in lines if r["seed"] < 2)
    machine_b = "".join(json.dumps(r) + "\n" for r in lines if r["seed"] == 2)
    (tmp_path / "results.jsonl").write_text(machine_a + machine_b)  # two machines' files, appended
    monkeypatch.setattr(token_efficiency.run, "train_run", no_training)
    monkeypatch.setattr(token_efficiency.run, "segment_split", no_training)
    config_path = tmp_path / "compare.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert main(["compare-tokenizers", "--config", str(config_path), "--report-only"]) == 0
    table = (tmp_path / "results.md").read_text()
    assert "| patch | 4 | 4.0 |" in table and table.splitlines()[2].endswith("| 3 |")
    assert "| colour |" in table
    assert sorted(path.name for path in tmp_path.glob("*.png")) == [
        "perplexity_vs_tokens.png",
        "val_loss_vs_steps.png",
        "val_loss_vs_time.png",
    ]


def test_report_only_without_runs_of_the_experiment_fails_in_one_line(tmp_path, capsys):
    config_path = tmp_path / "compare.yaml"
    config_path.write_text(yaml.safe_dump(toy_config(tmp_path)))
    assert main(["compare-tokenizers", "--config", str(config_path), "--report-only"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("subobject-vlm compare-tokenizers: error: output_dir:") and "\n" not in error


def test_images_of_another_size_are_resized_with_a_warning_naming_how_many_and_the_sizes(tmp_path, capsys):
    write_user_data(tmp_path)  # 32 x 32 images
    Image.new("RGB", (48, 40)).save(tmp_path / "images" / "0.png")
    Image.new("RGB", (48, 40)).save(tmp_path / "images" / "1.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "2.png")
    config = load_config(user_config(tmp_path / "out"), base_dir=tmp_path)
    train = load_split(config, "train", tmp_path / "out")
    assert train.images.shape == (4, 32, 32, 3)
    warning = capsys.readouterr().err.strip()
    assert warning == (
        "warning: data.train: 3 of 4 images are not 32x32 (image_size) and are resized (squashed) to it: "
        "2 of 48x40, 1 of 20x20"
    )
    load_split(config, "val", tmp_path / "out")
    assert capsys.readouterr().err == ""


def test_boundary_maps_are_computed_once_per_image_for_every_budget_and_tokenizer_of_one_model(
    tmp_path, monkeypatch
):
    from subobject_vlm.segmentation import segmenter

    predicted = []
    load = segmenter.load_boundary_model

    class Counting:  # the boundary model, counting the images it is asked for
        def __init__(self, model) -> None:
            self.model = model

        def predict(self, images):
            predicted.extend(images)
            return self.model.predict(images)

    def counting_load(*args, **kwargs):
        return Counting(load(*args, **kwargs))

    monkeypatch.setattr(segmenter, "load_boundary_model", counting_load)
    one = {"boundary_model": "default", "boundary_model_options": {"resolution": 64, "batch_size": 1}}
    other = {**one, "seeds": "threshold", "boundary_model_options": {"resolution": 64, "batch_size": 4}}
    config = toy_config(tmp_path, tokenizers={"ours": one, "ours-threshold": other}, budgets=[2, 4])
    config["training"]["steps"] = 1
    compare_tokenizers(config)
    assert len(predicted) == 10 + 4  # train and val images, once each


def test_the_medium_preset_has_more_steps_and_seeds_than_the_quick_one_without_over_fitting():
    quick, medium = (load_config(REPO_CONFIGS / f"compare_{name}.yaml") for name in ("quick", "medium"))
    assert len(medium.seeds) >= 3 and medium.training.steps > quick.training.steps
    samples = 2 * medium.data["synthetic"]["train"]  # a caption and a question per scene
    assert medium.training.steps * medium.training.batch_size / samples <= MAX_EPOCHS


def test_records_from_before_best_val_loss_take_it_from_their_curve():
    from subobject_vlm.evaluation.token_efficiency import results_table

    curve = [[100, 1.0, 0.7], [200, 2.0, 0.55], [300, 3.0, 0.6]]
    run = dict(
        tokenizer="a", budget=8, seed=0, mean_tokens=8.0, val_loss=0.6, val_perplexity=1.8, curve=curve
    )
    assert "| 0.5500 ± 0.0000 (step 200) |" in results_table([run])


@pytest.mark.parametrize("preset", ["compare_quick", "compare_medium"])
def test_the_committed_results_md_is_the_report_of_its_results_jsonl(preset, tmp_path):
    committed = REPO_CONFIGS.parent / "benchmarks" / "results" / preset
    (tmp_path / "results.jsonl").write_text((committed / "results.jsonl").read_text())
    config = yaml.safe_load((REPO_CONFIGS / f"{preset}.yaml").read_text())
    token_efficiency.write_report({**config, "output_dir": str(tmp_path)})
    assert (tmp_path / "results.md").read_text() == (committed / "results.md").read_text()
