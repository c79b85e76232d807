"""BSDS evaluation: pixel matching, the boundary benchmark's counts and scores, token metrics, eval_bsds."""

import json
import math

import numpy as np
import pytest
from conftest import Stripes

from subobject_vlm.evaluation.boundary_benchmark import (
    average_precision,
    boundary_counts,
    evaluate_boundary_image,
    summarize_boundary_counts,
)
from subobject_vlm.evaluation.edges import thin
from subobject_vlm.evaluation.matching import correspond_pixels, disk_offsets, maximum_matching
from subobject_vlm.evaluation.region_metrics import (
    achievable_segmentation_accuracy,
    boundary_precision,
    boundary_recall,
    contingency,
    segmentation_boundaries,
    segmentation_metrics,
    undersegmentation_error,
)

BSDS_SHAPE = (321, 481)  # diagonal 578.3 px: the BSDS tolerance 0.0075 * diagonal is 4.34 px


# ------------------------------------------------------------------------------------------------ helpers


def max_dist_for_radius(shape: tuple[int, int], radius: float) -> float:
    """The BSDS ``max_dist`` (fraction of the diagonal) that gives a matching radius of ``radius`` pixels."""
    return radius / math.hypot(*shape)


def brute_force_matching_size(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """Maximum matching size by plain augmenting paths (Kuhn), edges between pixels within ``radius``."""
    p, g = np.argwhere(pred), np.argwhere(gt)
    adjacency = [
        [j for j in range(len(g)) if ((p[i] - g[j]) ** 2).sum() <= radius * radius] for i in range(len(p))
    ]
    mate_of_gt = [-1] * len(g)

    def augment(i: int, seen: set) -> bool:
        for j in adjacency[i]:
            if j not in seen:
                seen.add(j)
                if mate_of_gt[j] < 0 or augment(mate_of_gt[j], seen):
                    mate_of_gt[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(p)))


def horizontal_line(shape, row: int, start: int = 40, stop: int = 440) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[row, start:stop] = True
    return out


def blocks_segmentation() -> np.ndarray:
    """A 60x80 label map with 4 rectangles of different sizes (labels 1..4, as BSDS numbers them)."""
    seg = np.ones((60, 80), dtype=np.int32)
    seg[:, 50:] = 2
    seg[35:, :50] = 3
    seg[35:, 65:] = 4
    return seg


def sobel_probs(image: np.ndarray) -> np.ndarray:
    """A simple boundary model for tests: Sobel gradient magnitude of the grey image, scaled to [0, 1]."""
    from scipy import ndimage as ndi

    grey = ndi.gaussian_filter(image.astype(np.float32).mean(axis=2), 1.0)
    magnitude = np.hypot(ndi.sobel(grey, axis=0), ndi.sobel(grey, axis=1))
    return (magnitude / (magnitude.max() + 1e-6)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ thinning


def test_thin_gives_exactly_skimage_thin_on_random_masks():
    from scipy import ndimage as ndi
    from skimage.morphology import thin as skimage_thin

    rng = np.random.default_rng(0)
    for i in range(60):
        h, w = rng.integers(1, 48, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        if i % 2:
            mask = ndi.binary_dilation(mask, iterations=2)
        np.testing.assert_array_equal(thin(mask), skimage_thin(mask))


def test_thin_reduces_a_thick_bar_to_a_one_pixel_line():
    bar = np.zeros((20, 40), dtype=bool)
    bar[8:13, 5:35] = True
    thinned = thin(bar)
    assert thinned.sum() < bar.sum() / 3
    assert (thinned.sum(axis=0)[8:32] == 1).all()  # one pixel per column along the bar


# ------------------------------------------------------------------------------------------------ matching


def test_disk_offsets_are_within_radius_and_nearest_first():
    offsets = disk_offsets(4.34)
    d2 = (offsets**2).sum(axis=1)
    assert (d2 <= 4.34**2).all() and len(offsets) == 61
    assert (np.diff(d2) >= 0).all() and tuple(offsets[0]) == (0, 0)


def test_maximum_matching_size_equals_brute_force_on_random_point_sets():
    rng = np.random.default_rng(1)
    shape = (24, 24)
    for _ in range(40):
        pred = rng.random(shape) < rng.uniform(0.02, 0.3)
        gt = rng.random(shape) < rng.uniform(0.02, 0.3)
        radius = rng.uniform(1.0, 3.5)
        pred_matched, gt_matched = correspond_pixels(pred, gt, max_dist_for_radius(shape, radius))
        expected = brute_force_matching_size(pred, gt, radius)
        assert pred_matched.sum() == gt_matched.sum() == expected


def test_maximum_matching_pairs_are_one_to_one_edges_of_the_graph():
    rng = np.random.default_rng(2)
    candidates = np.stack([rng.permutation(150)[:6] for _ in range(200)])  # distinct within a row
    neighbours = np.where(rng.random((200, 6)) < 0.4, candidates, -1)
    mate_left, mate_right = maximum_matching(neighbours, 150)
    left = np.flatnonzero(mate_left >= 0)
    assert (mate_right[mate_left[left]] == left).all()  # consistent both ways, hence one-to-one
    assert all(mate_left[i] in neighbours[i] for i in left)  # every pair is an edge
    assert (mate_right >= 0).sum() == len(left)


def test_maximum_matching_finds_the_augmenting_path_a_greedy_pass_misses():
    # left 0 takes right 0 greedily; left 1 can only use right 0, so left 0 must move to right 1
    neighbours = np.array([[0, 1], [0, -1]])
    mate_left, _ = maximum_matching(neighbours, 2)
    assert mate_left.tolist() == [1, 0]


def test_line_shifted_within_tolerance_is_fully_matched():
    gt = horizontal_line(BSDS_SHAPE, 100)
    pred = horizontal_line(BSDS_SHAPE, 104)  # 4 px < 4.34 px
    cnt_r, sum_r, cnt_p, sum_p = boundary_counts(pred, [gt])
    assert cnt_r == sum_r == cnt_p == sum_p == 400


def test_line_shifted_beyond_tolerance_matches_nothing():
    gt = horizontal_line(BSDS_SHAPE, 100)
    pred = horizontal_line(BSDS_SHAPE, 105)  # 5 px > 4.34 px
    assert boundary_counts(pred, [gt]).tolist() == [0, 400, 0, 400]


def test_duplicate_prediction_lines_are_matched_only_once():
    gt = horizontal_line(BSDS_SHAPE, 100)
    pred = horizontal_line(BSDS_SHAPE, 99) | horizontal_line(BSDS_SHAPE, 102)
    cnt_r, sum_r, cnt_p, sum_p = boundary_counts(pred, [gt])
    assert (cnt_r, sum_r) == (400, 400)  # recall 1
    assert (cnt_p, sum_p) == (400, 800)  # precision 1/2: one-to-one, no double counting


def test_counts_pool_recall_over_annotators_and_precision_over_any_annotator():
    pred = horizontal_line(BSDS_SHAPE, 100)
    agrees = horizontal_line(BSDS_SHAPE, 101)
    elsewhere = horizontal_line(BSDS_SHAPE, 250, 40, 240)
    cnt_r, sum_r, cnt_p, sum_p = boundary_counts(pred, [agrees, elsewhere])
    assert (cnt_r, sum_r) == (400, 600)  # GT pixels summed over both annotators
    assert (cnt_p, sum_p) == (400, 400)  # a predicted pixel counts if any annotator matched it


def test_partial_overlap_matches_only_the_overlapping_part():
    gt = horizontal_line(BSDS_SHAPE, 100, 40, 240)
    pred = horizontal_line(BSDS_SHAPE, 102, 140, 340)
    cnt_r, sum_r, cnt_p, sum_p = boundary_counts(pred, [gt])
    # 100 columns overlap, and pairs may shift by up to 3 columns (dx <= 3 at dy = 2): 103 pairs
    assert cnt_r == cnt_p == 103
    assert (sum_r, sum_p) == (200, 200)


# ------------------------------------------------------------------------------------------------ one image


def test_thresholds_binarize_at_or_above_each_threshold():
    gt = horizontal_line(BSDS_SHAPE, 100)
    probs = np.zeros(BSDS_SHAPE, dtype=np.float32)
    probs[horizontal_line(BSDS_SHAPE, 101)] = 0.5
    counts = evaluate_boundary_image(probs, [gt], thresholds=[0.25, 0.5, 0.75])
    assert counts.tolist() == [[400, 400, 400, 400], [400, 400, 400, 400], [0, 400, 0, 0]]


def test_prediction_is_thinned_before_matching():
    gt = horizontal_line(BSDS_SHAPE, 100)
    probs = np.zeros(BSDS_SHAPE, dtype=np.float32)
    probs[98:103, 40:440] = 1.0  # a 5-pixel-thick band
    thinned = evaluate_boundary_image(probs, [gt], thresholds=[0.5])[0]
    raw = evaluate_boundary_image(probs, [gt], thresholds=[0.5], apply_thinning=False)[0]
    assert raw[3] == 2000 and thinned[3] < 450  # one line instead of five
    assert thinned[2] == thinned[3]  # every pixel of the thinned line is matched


def test_integer_threshold_count_gives_bsds_thresholds():
    probs = np.zeros(BSDS_SHAPE, dtype=np.float32)
    counts = evaluate_boundary_image(probs, [horizontal_line(BSDS_SHAPE, 10)], thresholds=99)
    assert counts.shape == (99, 4)


# ------------------------------------------------------------------------------------------------ scores


def test_ods_picks_one_dataset_threshold_and_ois_the_best_per_image():
    perfect, empty = [10, 10, 10, 10], [0, 10, 0, 0]
    counts = np.array([[perfect, empty], [empty, perfect]])  # image 0 best at t0, image 1 at t1
    scores = summarize_boundary_counts(counts, [0.3, 0.6])
    assert scores["OIS"]["f"] == pytest.approx(1.0)
    assert scores["ODS"]["f"] == pytest.approx(2 / 3)  # recall 1/2, precision 1 at either threshold
    assert [r["threshold"] for r in scores["per_image"]] == [0.3, 0.6]


def test_perfect_prediction_scores_ods_and_ois_one():
    gt = horizontal_line(BSDS_SHAPE, 100)
    probs = gt.astype(np.float32)
    counts = evaluate_boundary_image(probs, [gt], thresholds=9)[None]
    scores = summarize_boundary_counts(counts, 9)
    assert scores["ODS"]["f"] == scores["OIS"]["f"] == pytest.approx(1.0)


def test_average_precision_integrates_precision_over_recall_on_the_bsds_grid():
    # constant precision 0.6 for recall 0..1: 101 grid points x 0.01 (the BSDS sum) -> 0.606
    assert average_precision([1.0, 0.5, 0.0], [0.6, 0.6, 0.6]) == pytest.approx(0.606)
    # recall only up to 0.5: precision counts as 0 beyond the curve
    assert average_precision([0.5, 0.0], [0.6, 0.6]) == pytest.approx(0.6 * 51 * 0.01)


# ------------------------------------------------------------------------------------------------ token metrics


def test_segmentation_boundaries_follow_bsds_seg2bdry():
    seg = np.zeros((6, 8), dtype=np.int32)
    seg[:, 5:] = 1
    expected = np.zeros((6, 8), dtype=bool)
    expected[:-1, 4] = True  # the 2x2 block at column 4 straddles the split; the last row is never marked
    np.testing.assert_array_equal(segmentation_boundaries(seg), expected)


def test_perfect_segmentation_has_recall_one_asa_one_ue_zero():
    gt = blocks_segmentation()
    gt_boundary = thin(segmentation_boundaries(gt))
    metrics = segmentation_metrics(gt + 7, [gt], [gt_boundary])  # ids do not matter
    assert metrics["boundary_recall"] == metrics["boundary_precision"] == 1.0
    assert metrics["boundary_recall_2px"] == 1.0
    assert metrics["achievable_segmentation_accuracy"] == 1.0
    assert metrics["undersegmentation_error"] == 0.0
    assert metrics["tokens"] == 4


def test_one_region_asa_is_the_largest_gt_segment_fraction():
    gt = blocks_segmentation()
    areas = np.bincount(gt.ravel())[1:]
    one_region = np.zeros_like(gt)
    assert achievable_segmentation_accuracy(one_region, gt) == pytest.approx(areas.max() / gt.size)


def test_one_region_ue_sums_the_smaller_side_of_every_gt_segment():
    gt = blocks_segmentation()
    areas = np.bincount(gt.ravel())[1:]
    expected = np.minimum(areas, gt.size - areas).sum() / gt.size
    assert undersegmentation_error(np.zeros_like(gt), gt) == pytest.approx(expected)


def test_ue_and_asa_of_a_region_leaking_one_column_into_its_neighbour():
    gt = np.zeros((10, 10), dtype=np.int32)
    gt[:, 5:] = 1
    seg = np.zeros((10, 10), dtype=np.int32)
    seg[:, 6:] = 1  # region 0 = left half + 1 column (60 px), region 1 = 40 px inside the right half
    assert undersegmentation_error(seg, gt) == pytest.approx((10 + 10) / 100)  # min(50,10) + min(10,50)
    assert achievable_segmentation_accuracy(seg, gt) == pytest.approx((50 + 40) / 100)


def test_per_annotator_region_metrics_are_averaged():
    gt = blocks_segmentation()
    halves = np.zeros_like(gt)
    halves[:, 40:] = 1
    single = [achievable_segmentation_accuracy(gt, g) for g in (gt, halves)]
    assert single[0] == 1.0 and single[1] < 1.0
    assert achievable_segmentation_accuracy(gt, [gt, halves]) == pytest.approx(np.mean(single))


def test_boundary_recall_with_pixel_tolerance_counts_gt_pixels_within_that_distance():
    gt = np.zeros((40, 40), dtype=np.int32)
    gt[:, 20:] = 1
    gt_boundary = thin(segmentation_boundaries(gt))
    near, far = np.zeros_like(gt), np.zeros_like(gt)
    near[:, 22:] = 1  # boundary 2 px to the right
    far[:, 23:] = 1  # 3 px
    assert boundary_recall(near, gt_boundary, tolerance=2) == 1.0
    assert boundary_recall(far, gt_boundary, tolerance=2) == 0.0
    assert boundary_recall(far, gt_boundary, tolerance=3) == 1.0


def test_boundary_precision_is_zero_for_a_segmentation_without_boundaries():
    gt = blocks_segmentation()
    assert boundary_precision(np.zeros_like(gt), thin(segmentation_boundaries(gt))) == 0.0


def test_contingency_counts_pixels_per_region_and_gt_label():
    seg = np.array([[0, 0, 1], [1, 1, 1]])
    gt = np.array([[5, 6, 6], [6, 6, 6]])
    table = contingency(seg, gt)
    assert table[:, [5, 6]].tolist() == [[1, 1], [0, 4]]


# ------------------------------------------------------------------------------------------------ eval_bsds


def test_eval_bsds_writes_metrics_json_and_plots_on_two_images(bsds_root, tmp_path):
    from subobject_vlm.evaluation import eval_bsds

    report = eval_bsds(
        bsds_root,
        "val",
        max_tokens=(16, 48),
        baselines=("patch", "slic"),
        out_dir=tmp_path,
        limit=2,
        thresholds=9,
        boundary_probs_fn=sobel_probs,
        workers=0,
        progress=False,
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["config"]["num_images"] == 2 and saved["config"]["model"] == "sobel_probs"
    assert 0 < saved["boundary"]["ODS"]["f"] <= saved["boundary"]["OIS"]["f"] <= 1
    assert set(saved["tokens"]) == {"sobel_probs", "patch", "slic"}
    assert (tmp_path / "pr_curve.png").stat().st_size > 0
    assert (tmp_path / "token_metrics.png").stat().st_size > 0
    assert report["tokens"]["sobel_probs"]["16"]["tokens"] <= 16


def test_eval_bsds_runs_baselines_at_our_exact_per_image_token_counts(bsds_root, tmp_path):
    from subobject_vlm.evaluation import eval_bsds

    report = eval_bsds(
        bsds_root,
        "val",
        max_tokens=(32,),
        baselines=("patch", "slic"),
        out_dir=tmp_path,
        limit=2,
        thresholds=None,
        boundary_probs_fn=sobel_probs,
        workers=0,
        progress=False,
    )
    assert report["boundary"] is None
    for image in report["per_image"]:
        per_tokenizer = image["tokens"]["32"]
        ours = per_tokenizer["sobel_probs"]["tokens"]
        assert per_tokenizer["patch"]["tokens"] == per_tokenizer["slic"]["tokens"] == ours


def test_eval_bsds_with_a_baseline_model_has_no_boundary_benchmark(bsds_root, tmp_path):
    from subobject_vlm.evaluation import eval_bsds

    report = eval_bsds(
        bsds_root,
        "val",
        model="patch",
        max_tokens=(24,),
        baselines=("patch",),
        out_dir=tmp_path,
        limit=1,
        workers=0,
        progress=False,
    )
    assert report["boundary"] is None and not (tmp_path / "pr_curve.png").exists()
    assert report["tokens"]["patch"]["24"]["tokens"] == 24


class CountingSobel:
    """A boundary model (``sobel_probs``) that counts the images of each call."""

    name = "test-counting-sobel"

    def __init__(self):
        self.calls = []

    def predict(self, images):
        self.calls.append(len(images))
        return [sobel_probs(image) for image in images]


def test_eval_bsds_compares_against_a_registered_label_map_tokenizer_by_default(
    bsds_root, tmp_path, scratch_registry
):
    from subobject_vlm.evaluation import eval_bsds

    scratch_registry.register_label_map_tokenizer("test-stripes", lambda **options: Stripes())
    report = eval_bsds(
        bsds_root,
        "val",
        max_tokens=(8,),
        out_dir=tmp_path,
        limit=1,
        thresholds=None,
        boundary_probs_fn=sobel_probs,
        workers=0,
        progress=False,
    )
    assert report["config"]["baselines"] == ["patch", "slic", "felzenszwalb", "test-stripes"]
    [image] = report["per_image"]
    assert image["tokens"]["8"]["test-stripes"]["tokens"] == image["tokens"]["8"]["sobel_probs"]["tokens"]


def test_eval_bsds_runs_the_boundary_model_once_per_image_for_every_budget(
    bsds_root, tmp_path, scratch_registry
):
    from subobject_vlm.evaluation import eval_bsds

    model = CountingSobel()
    scratch_registry.register_boundary_model(model.name, lambda **options: model)
    report = eval_bsds(
        bsds_root,
        "val",
        model=model.name,
        max_tokens=(4, 8, 16),
        baselines=(),
        out_dir=tmp_path,
        limit=2,
        thresholds=3,
        workers=0,
        progress=False,
    )
    assert model.calls == [1, 1]  # one image per call, once each
    assert list(report["tokens"][model.name]) == ["4", "8", "16"] and report["boundary"] is not None


# ------------------------------------------------------------------------------------------------ slow checks


@pytest.mark.slow
def test_exact_matcher_agrees_with_pyedgeeval_csa_on_a_bsds_image(bsds_root):
    pytest.importorskip("pyEdgeEval", reason="pyedgeeval (official CSA matcher) is not installed")
    from subobject_vlm.data.bsds import load_bsds
    from subobject_vlm.image_utils import load_image

    sample = load_bsds(bsds_root, "val", limit=1)[0]
    probs = sobel_probs(load_image(sample.image_path))
    for t in (0.1, 0.3, 0.6):
        bmap = thin(probs >= t)
        exact = boundary_counts(bmap, sample.boundaries)
        csa = boundary_counts(bmap, sample.boundaries, matcher="csa")
        assert exact[0] >= csa[0]  # a maximum matching matches at least as many GT pixels
        assert exact[0] == pytest.approx(csa[0], rel=0.01)
        assert exact[2] == pytest.approx(csa[2], rel=0.02)
        assert (exact[[1, 3]] == csa[[1, 3]]).all()


@pytest.mark.slow
def test_benchmark_with_a_process_pool_equals_the_in_process_run(bsds_root):
    from subobject_vlm.data.bsds import load_bsds
    from subobject_vlm.evaluation import benchmark_boundaries
    from subobject_vlm.image_utils import load_image

    samples = load_bsds(bsds_root, "val", limit=2)
    probs = [sobel_probs(load_image(s.image_path)) for s in samples]
    gts = [s.boundaries for s in samples]
    serial = benchmark_boundaries(probs, gts, thresholds=5, workers=0, progress=False)
    pooled = benchmark_boundaries(probs, gts, thresholds=5, workers=2, progress=False)
    assert serial["counts"] == pooled["counts"]


def test_nms_changes_the_boundary_benchmark_but_never_the_tokens(bsds_root, tmp_path):
    from subobject_vlm.evaluation import eval_bsds

    options = dict(max_tokens=(16,), baselines=(), limit=1, thresholds=9, boundary_probs_fn=sobel_probs)
    options.update(workers=0, progress=False)
    raw = eval_bsds(bsds_root, "val", out_dir=tmp_path / "raw", nms=False, **options)
    thinned = eval_bsds(bsds_root, "val", out_dir=tmp_path / "nms", **options)
    assert thinned["config"]["nms"] and not raw["config"]["nms"]
    assert thinned["boundary"]["ODS"] != raw["boundary"]["ODS"]
    assert thinned["tokens"] == raw["tokens"]
