"""compare-tokenizers statistics: 95 % intervals over seeds, paired comparisons against ours, and results.md
rebuilt from every run in results.jsonl."""

import json
import math

import pytest
from scipy import stats

from subobject_vlm.evaluation.token_efficiency import compare_tokenizers
from subobject_vlm.evaluation.token_efficiency.results import (
    intervals_table,
    paired_comparisons,
    paired_table,
    summarize,
)


def record(
    tokenizer: str, seed: int, accuracy: float | None, budget: int = 16, val_loss: float = 0.5
) -> dict:
    """A hand-written results.jsonl line (no training)."""
    return {
        "tokenizer": tokenizer,
        "budget": budget,
        "seed": seed,
        "mean_tokens": 14.0,
        "val_loss": val_loss,
        "best_val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "attribute_accuracy": accuracy,
        "accuracy": None,
        "step_seconds": 0.05,
        "wall_seconds": 50.0,
    }


def test_the_interval_over_seeds_is_the_student_t_interval_computed_by_hand():
    runs = [record("slic", seed, accuracy) for seed, accuracy in enumerate([0.30, 0.35, 0.40])]
    [row] = summarize(runs)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) * sample std / sqrt(n)
    assert row["attribute_accuracy_low"] == pytest.approx(0.35 - half)
    assert row["attribute_accuracy_high"] == pytest.approx(0.35 + half)
    assert f"0.350 [{0.35 - half:.3f}, {0.35 + half:.3f}]" in intervals_table(runs)


def test_the_paired_comparison_is_scipys_paired_t_test_on_the_same_seeds():
    ours, slic = [0.40, 0.42, 0.47, 0.41], [0.35, 0.40, 0.41, 0.40]
    runs = [record("ours", s, a) for s, a in enumerate(ours)] + [
        record("slic", s, a) for s, a in enumerate(slic)
    ]
    runs.append(record("slic", 9, 0.9))  # a seed ours lacks: no pair
    [row] = paired_comparisons(runs)
    differences = [o - r for o, r in zip(slic, ours)]
    low, high = stats.t.interval(0.95, 3, loc=sum(differences) / 4, scale=stats.sem(differences))
    assert (row["tokenizer"], row["reference"], row["pairs"]) == ("slic", "ours", 4)
    assert row["attribute_accuracy"] == pytest.approx(sum(differences) / 4)
    assert (row["attribute_accuracy_low"], row["attribute_accuracy_high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    assert row["attribute_accuracy_p"] == pytest.approx(stats.ttest_rel(slic, ours).pvalue)
    assert f"p={stats.ttest_rel(slic, ours).pvalue:.3g}" in paired_table(runs)


def test_the_reference_tokenizer_can_be_named():
    runs = [record(name, s, 0.3 + 0.01 * s + 0.1 * i) for i, name in enumerate(["a", "b"]) for s in range(2)]
    assert paired_comparisons(runs) == []  # no tokenizer named ours*
    [row] = paired_comparisons(runs, reference="a")
    assert (row["tokenizer"], row["reference"], row["attribute_accuracy"]) == ("b", "a", pytest.approx(0.1))


def test_a_single_seed_gives_no_interval_and_no_comparison():
    runs = [record("ours", 0, 0.4), record("slic", 0, 0.3)]
    [row] = paired_comparisons(runs)
    assert row["pairs"] == 1 and math.isnan(row["attribute_accuracy_p"])
    assert all(math.isnan(r["attribute_accuracy_low"]) for r in summarize(runs))
    assert "| slic | 16 | 0.5000 n/a | 0.5000 n/a | 0.300 n/a | n/a | 1 |" in intervals_table(runs)
    assert "| slic | ours | 16 | n/a | n/a | n/a | n/a | 1 |" in paired_table(runs)


def test_null_and_nan_metrics_are_skipped_not_propagated():
    runs = [record("ours", 0, 0.40), record("ours", 1, 0.42), record("ours", 2, None)]
    runs += [record("slic", 0, 0.30), record("slic", 1, float("nan")), record("slic", 2, 0.35)]
    rows = {r["tokenizer"]: r for r in summarize(runs)}
    assert (
        rows["ours"]["attribute_accuracy"] == pytest.approx(0.41)
        and rows["ours"]["attribute_accuracy_n"] == 2
    )
    assert (
        rows["slic"]["attribute_accuracy"] == pytest.approx(0.325)
        and rows["slic"]["attribute_accuracy_n"] == 2
    )
    [row] = paired_comparisons(runs)
    assert row["attribute_accuracy_n"] == 1 and row["attribute_accuracy"] == pytest.approx(
        -0.10
    )  # seed 0 only
    assert "0.325 [" in intervals_table(runs) and "nan" not in intervals_table(runs) + paired_table(runs)


def test_results_md_is_rebuilt_from_every_invocations_runs_in_results_jsonl(tmp_path):
    config = {
        "output_dir": str(tmp_path),
        "data": {"synthetic": {"train": 8, "val": 4}},
        "image_size": 32,
        "label_size": 32,
        "tokenizers": {"patch": {"boundary_model": "patch"}},
        "budgets": [4],
        "model": {"vision": "pixels", "text": {"hidden_size": 32, "num_hidden_layers": 1}},
        "training": {"steps": 2, "batch_size": 4, "eval_every": 2, "eval_batch_size": 8},
    }
    compare_tokenizers({**config, "seeds": [0]})  # one machine's share of the grid
    compare_tokenizers({**config, "seeds": [1]})  # the other's, appended to the same results.jsonl
    seeds = [json.loads(line)["seed"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert seeds == [0, 1]
    table = (tmp_path / "results.md").read_text()
    assert table.splitlines()[2].startswith("| patch | 4 | 4.0 |") and table.splitlines()[2].endswith("| 2 |")
