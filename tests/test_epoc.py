"""EPOC post-processing: boundary probabilities -> label maps."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from subobject_vlm.segmentation import epoc, merge_regions, relabel_by_area


def random_boundary_map(seed: int, size=(64, 80), blobs: int = 12) -> np.ndarray:
    """Smooth random boundary-like map: distance-to-Voronoi-edge bands plus noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    points = rng.uniform(0, 1, (blobs, 2)) * [h, w]
    yy, xx = np.mgrid[:h, :w]
    d = np.sort(np.hypot(yy[..., None] - points[:, 0], xx[..., None] - points[:, 1]), axis=-1)
    probs = np.exp(-((d[..., 1] - d[..., 0]) ** 2) / 6.0) + rng.uniform(0, 0.15, (h, w))
    return np.clip(probs, 0, 1).astype(np.float32)


def assert_valid_label_map(label_map: np.ndarray, shape, max_tokens=None, connected=True):
    assert label_map.shape == shape and label_map.dtype == np.int32
    areas = np.bincount(label_map.ravel())
    assert label_map.min() == 0 and (areas > 0).all(), (
        "labels must be contiguous 0..n-1 and cover every pixel"
    )
    assert (np.diff(areas) <= 0).all(), "labels must be ordered by decreasing area"
    if max_tokens is not None:
        assert len(areas) <= max_tokens
    for label in range(len(areas) if connected else 0):  # every region is one 4-connected piece
        assert ndi.label(label_map == label)[1] == 1


MAPS = [random_boundary_map(seed) for seed in range(6)] + [
    np.zeros((17, 23), np.float32),
    np.ones((17, 23), np.float32),
    np.full((17, 23), 0.5, np.float32),
    np.random.default_rng(0).uniform(0, 1, (31, 29)).astype(np.float32),
    np.zeros((1, 50), np.float32),
    np.eye(20, dtype=np.float32),
]


@pytest.mark.parametrize("index", range(len(MAPS)))
@pytest.mark.parametrize("max_tokens", [None, 1, 5, 40])
@pytest.mark.parametrize("assign", ["watershed", "nearest"])
@pytest.mark.parametrize("seeds", ["threshold", "minima"])
def test_label_maps_cover_every_pixel_contiguously_in_area_order(index, max_tokens, assign, seeds):
    probs = MAPS[index]
    label_map = epoc(probs, 0.3, max_tokens=max_tokens, assign=assign, seeds=seeds)
    # nearest-seed assignment (Euclidean) may leave a region in several pieces; flooding never does
    assert_valid_label_map(label_map, probs.shape, max_tokens, connected=assign == "watershed")


@pytest.mark.parametrize("merge", ["weakest_boundary", "smallest_region"])
def test_epoc_is_deterministic(merge):
    probs = random_boundary_map(3)
    first = epoc(probs, 0.2, max_tokens=7, merge=merge)
    assert np.array_equal(first, epoc(probs.copy(), 0.2, max_tokens=7, merge=merge))


def test_minima_seeds_split_a_region_at_a_weak_ridge_and_fill_the_budget():
    columns = np.arange(60, dtype=np.float32)
    probs = np.tile(0.2 + 0.4 * np.exp(-((columns - 30) ** 2) / 8), (40, 1))  # two basins above threshold
    assert epoc(probs, 0.1).max() == 0  # no pixel under the threshold: one region
    split = epoc(probs, 0.1, seeds="minima", max_tokens=2)
    assert split.max() == 1 and len(np.unique(split[:, :29])) == 1 and len(np.unique(split[:, 31:])) == 1
    assert split[0, 0] != split[0, -1]
    field = random_boundary_map(2, size=(96, 128), blobs=6)
    assert epoc(field, 0.0).max() + 1 < 30 <= epoc(field, 0.0, seeds="minima").max() + 1
    assert epoc(field, 0.0, max_tokens=30, seeds="minima").max() + 1 == 30


def test_all_zero_and_all_one_maps_give_a_single_region():
    assert epoc(np.zeros((8, 9))).max() == 0
    assert epoc(np.ones((8, 9))).max() == 0


def test_seeds_are_four_connected_components_below_threshold():
    probs = np.zeros((5, 5), np.float32)
    probs[2, :] = 1.0  # a horizontal wall splits the image in two
    probs[:, 2] = 1.0  # and a vertical one into four quadrants
    label_map = epoc(probs, 0.5)
    assert label_map.max() + 1 == 4
    probs[0, 1] = probs[1, 0] = 0.0
    diagonal_only = np.ones((3, 3), np.float32)
    diagonal_only[0, 0] = diagonal_only[1, 1] = 0.0  # touching only diagonally: two seeds
    assert epoc(diagonal_only, 0.5, assign="nearest").max() + 1 == 2


def test_infinities_are_clipped_and_nan_is_an_error():
    probs = random_boundary_map(1)
    with_inf = probs.copy()
    with_inf[0, 0], with_inf[5, 5] = np.inf, -np.inf
    assert_valid_label_map(epoc(with_inf, 0.3), probs.shape)
    probs[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        epoc(probs)


@pytest.mark.parametrize(
    "bad, error",
    [(np.zeros((2, 3, 4)), ValueError), (np.zeros((0, 4)), ValueError), (np.zeros((4, 4), bool), TypeError)],
)
def test_bad_boundary_maps_are_rejected_with_a_clear_error(bad, error):
    with pytest.raises(error, match="boundary_probs"):
        epoc(bad)


def test_bad_options_are_rejected():
    probs = random_boundary_map(0)
    bad = ({"max_tokens": 0}, {"min_area": -1}, {"merge": "random"}, {"assign": "flood"}, {"seeds": "grid"})
    for kwargs in bad:
        with pytest.raises(ValueError):
            epoc(probs, **kwargs)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    probs = random_boundary_map(2)
    assert np.array_equal(epoc(torch.from_numpy(probs), 0.3), epoc(probs, 0.3))


def quadrants(strong_vertical: bool) -> np.ndarray:
    """Four quadrants; the vertical wall is strong (0.9) and the horizontal one weak (0.3), or vice versa."""
    probs = np.zeros((40, 40), np.float32)
    probs[19:21, :] = 0.3 if strong_vertical else 0.9
    probs[:, 19:21] = 0.9 if strong_vertical else 0.3
    return probs


def test_max_tokens_merges_across_the_weakest_boundary_first():
    for strong_vertical in (True, False):
        label_map = epoc(quadrants(strong_vertical), 0.1, max_tokens=2)
        assert label_map.max() + 1 == 2
        left_right_differ = label_map[5, 5] != label_map[5, 35]
        assert left_right_differ == strong_vertical  # the strong wall survives


def test_max_tokens_merges_smallest_regions_without_dropping_pixels():
    probs = np.zeros((30, 30), np.float32)
    probs[:, 10] = 1.0  # regions: 10 columns | 19 columns
    probs[5, 11:] = 1.0  # split the right part: a small top strip and a big bottom part
    label_map = epoc(probs, 0.5, max_tokens=2, merge="smallest_region")
    assert label_map.shape == probs.shape and label_map.max() + 1 == 2
    assert label_map[0, 20] == label_map[20, 20] or label_map[0, 20] == label_map[0, 0]


def test_min_area_merges_tiny_regions_into_a_neighbour():
    probs = np.zeros((30, 30), np.float32)
    probs[:, 15] = 1.0
    probs[2, 2:5] = probs[4, 2:5] = probs[2:5, 2] = probs[2:5, 4] = 1.0  # a 1-pixel enclosed region at (3, 3)
    assert epoc(probs, 0.5).max() + 1 == 3
    label_map = epoc(probs, 0.5, min_area=5)
    assert label_map.max() + 1 == 2 and np.bincount(label_map.ravel()).min() >= 5


def test_watershed_assignment_agrees_with_skimage_watershed():
    from skimage.segmentation import watershed

    probs = random_boundary_map(5, size=(96, 96), blobs=20)
    seeds = ndi.label(probs <= 0.2)[0]
    reference = watershed(probs, markers=seeds)
    ours = epoc(probs, 0.2)
    assert ours.max() == reference.max() - 1  # same seeds, same number of regions
    pairs = ours.ravel().astype(np.int64) * (reference.max() + 1) + reference.ravel()
    overlap = np.bincount(pairs, minlength=(ours.max() + 1) * (reference.max() + 1)).reshape(
        -1, reference.max() + 1
    )
    assert overlap.max(axis=1).sum() / ours.size > 0.97  # the same partition up to a few boundary pixels


def test_relabel_by_area_breaks_ties_by_input_id():
    label_map = np.array([[7, 7, 3, 3], [9, 9, 9, 9]])
    assert relabel_by_area(label_map).tolist() == [[2, 2, 1, 1], [0, 0, 0, 0]]


def test_merged_regions_of_equal_area_are_ordered_by_their_smallest_input_id():
    label_map = np.array([[3, 3, 4, 4, 0, 0, 0, 0]])
    probs = np.array([[0, 0, 0, 1, 1, 0, 0, 0]], np.float32)  # weak border 3|4, strong border 4|0
    merged = merge_regions(label_map, probs, max_tokens=2)
    assert merged.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]  # {3, 4} and {0} tie at 4 pixels: id 0 first


def test_merge_regions_rejects_unknown_order():
    with pytest.raises(ValueError, match="order"):
        merge_regions(np.zeros((3, 3), int), np.zeros((3, 3)), max_tokens=1, order="largest")


def test_nearest_assignment_gives_boundary_pixels_to_the_closest_seed():
    probs = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]], np.float32)  # seeds: column 0 and columns 5-6
    label_map = epoc(probs, 0.5, assign="nearest")
    assert label_map.tolist() == [[1, 1, 1, 0, 0, 0, 0]]  # columns 1-2 are closer to the left seed


def test_watershed_assignment_splits_a_band_at_its_ridge():
    probs = np.array([[0.0, 0.3, 0.9, 0.6, 0.5, 0.4, 0.0]], np.float32)  # ridge at column 2, off-centre
    label_map = epoc(probs, 0.1)
    assert label_map[0, :2].tolist() == [label_map[0, 0]] * 2 and label_map[0, 3] == label_map[0, 6]
    assert label_map[0, 1] != label_map[0, 3]


def test_region_adjacency_counts_border_pixel_pairs_and_their_mean_probability():
    from subobject_vlm.segmentation import region_adjacency

    label_map = np.array([[0, 0, 1], [2, 2, 1]])
    probs = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    edges, weight_sum, border_length = region_adjacency(label_map, probs)
    found = {
        tuple(e): (round(float(w), 6), int(c)) for e, w, c in zip(edges.tolist(), weight_sum, border_length)
    }
    assert found == {
        (0, 1): (0.25, 1),  # (0.2 + 0.3) / 2, one horizontal pair
        (0, 2): (0.25 + 0.35, 2),  # two vertical pairs: (0.1 + 0.4) / 2 and (0.2 + 0.5) / 2
        (1, 2): (0.55, 1),  # (0.5 + 0.6) / 2
    }


def flooded_by(kernel: str, probs: np.ndarray, threshold: float, seeds: str, monkeypatch) -> np.ndarray:
    """EPOC's watershed with the compiled kernel or with the numpy loop (``kernel``: "compiled" or "numpy")."""
    import importlib

    epoc_module = importlib.import_module("subobject_vlm.segmentation.epoc")
    if kernel == "compiled" and epoc_module._flood is None:
        pytest.skip("the compiled flooding kernel was not built (no C compiler at install time)")
    with monkeypatch.context() as patch:
        if kernel == "numpy":
            patch.setattr(epoc_module, "_flood", None)
        return epoc(probs, threshold, seeds=seeds)


FLOOD_MAPS = (
    MAPS
    + [random_boundary_map(seed, size=(120, 97), blobs=40) for seed in range(10, 16)]
    + [np.random.default_rng(seed).uniform(0, 1, (40, 41)).astype(np.float32) ** 3 for seed in range(4)]
)


@pytest.mark.parametrize(
    ("threshold", "seeds"), [(0.05, "threshold"), (0.3, "threshold"), (0.0, "minima")]
)  # 0 with minima: (nearly) only the regional minima are seeds
def test_compiled_flooding_gives_the_numpy_labels_exactly(threshold, seeds, monkeypatch):
    for probs in FLOOD_MAPS:
        compiled = flooded_by("compiled", probs, threshold, seeds, monkeypatch)
        assert np.array_equal(compiled, flooded_by("numpy", probs, threshold, seeds, monkeypatch))


@pytest.mark.parametrize("index", range(len(MAPS)))
def test_numpy_flooding_fallback_gives_valid_label_maps(index, monkeypatch):
    label_map = flooded_by("numpy", MAPS[index], 0.3, "threshold", monkeypatch)
    assert_valid_label_map(label_map, MAPS[index].shape)


def test_compiled_flooding_kernel_refuses_mismatched_grids():
    import importlib

    kernel = importlib.import_module("subobject_vlm.segmentation.epoc")._flood
    if kernel is None:
        pytest.skip("the compiled flooding kernel was not built")
    labels = np.zeros((5, 6), np.int32)
    with pytest.raises(ValueError, match="cannot flood"):
        kernel.flood(labels, np.zeros((5, 7), np.uint8), 64)
    with pytest.raises(ValueError, match="cannot flood"):
        kernel.flood(labels, np.zeros((5, 6), np.uint8), 255)


def test_relabel_and_merge_of_maps_larger_than_one_chunk_match_a_direct_computation():
    from subobject_vlm.segmentation import regions

    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 50, (300, 301)).astype(np.int32)  # 90,300 pixels: two chunks
    assert label_map.size > regions._CHUNK
    areas = np.bincount(label_map.ravel())
    order = np.lexsort((np.arange(len(areas)), -areas))  # area descending, ties by id
    expected = np.argsort(order)[label_map]
    assert np.array_equal(relabel_by_area(label_map), expected)
    merged = merge_regions(label_map, np.zeros(label_map.shape, np.float32), max_tokens=50)
    assert np.array_equal(merged, expected)  # nothing to merge: the same relabelling


def test_8_and_16_bit_maps_are_read_as_probabilities_as_the_boundary_command_writes_them(tmp_path):
    from PIL import Image

    probs = MAPS[0]
    eight = np.round(probs * 255).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "map.png")  # what `subobject-vlm boundary` writes
    read = np.asarray(Image.open(tmp_path / "map.png"))
    np.testing.assert_array_equal(
        epoc(read, 0.1, max_tokens=64), epoc(eight.astype(np.float32) / 255, 0.1, max_tokens=64)
    )
    sixteen = np.round(probs * 65535).astype(np.uint16)
    np.testing.assert_array_equal(epoc(sixteen, 0.1), epoc(sixteen.astype(np.float32) / 65535, 0.1))
    with pytest.raises(TypeError, match="8-bit"):
        epoc(np.zeros((4, 4), np.int64), 0.1)


def reference_weakest_first(label_map: np.ndarray, probs: np.ndarray, max_regions: int) -> np.ndarray:
    """The weakest-boundary merge written as plainly as possible, O(V * E) per merge: scan every edge for the
    lowest ``(mean strength, lo, hi)``, keep the region with more neighbours (the lower id on a tie), pool the
    borders; then area-descending labels, ties by the smallest input id of each merged group."""
    from subobject_vlm.segmentation import region_adjacency

    n = int(label_map.max()) + 1
    edges, weight_sum, border_length = region_adjacency(label_map, probs, n)
    stats = {
        (a, b): [s, c] for (a, b), s, c in zip(edges.tolist(), weight_sum.tolist(), border_length.tolist())
    }
    parent = list(range(n))
    alive = set(np.unique(label_map).tolist())

    def neighbours(r):
        return {b if a == r else a for a, b in stats if r in (a, b)}

    while len(alive) > max_regions and stats:
        a, b = min(stats, key=lambda e: (stats[e][0] / stats[e][1], e))
        if len(neighbours(a)) < len(neighbours(b)):
            a, b = b, a  # the survivor
        for key in [e for e in stats if b in e]:
            s, c = stats.pop(key)
            other = key[0] if key[1] == b else key[1]
            if other != a:
                pooled = stats.setdefault((min(a, other), max(a, other)), [0.0, 0])
                if pooled[1]:  # a common neighbour: pool the two borders (the survivor's sum first)
                    pooled[0], pooled[1] = pooled[0] + s, pooled[1] + c
                else:
                    pooled[0], pooled[1] = s, c
        parent[b] = a
        alive.discard(b)

    def root(r):
        while parent[r] != r:
            r = parent[r]
        return r

    roots = np.array([root(r) for r in range(n)])[label_map]
    groups = sorted(np.unique(roots), key=lambda g: (-(roots == g).sum(), label_map[roots == g].min()))
    lut = {g: i for i, g in enumerate(groups)}
    return np.vectorize(lut.get)(roots).astype(np.int32)


@pytest.mark.parametrize("seed", range(12))
def test_weakest_boundary_merge_equals_a_plain_reference_implementation(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(2, 24, 2)
    label_map = rng.integers(0, int(rng.integers(2, 40)), (h, w))  # scattered regions: many borders
    probs = (rng.integers(0, 4, (h, w)) / 3 if seed % 2 else rng.random((h, w))).astype(np.float32)  # ties
    budget = int(rng.integers(1, 12))
    merged = merge_regions(label_map, probs, max_tokens=budget)
    np.testing.assert_array_equal(merged, reference_weakest_first(label_map, probs, budget))


def test_minima_seeds_on_noise_merge_with_linear_queue_work(monkeypatch):
    """White noise with ``seeds="minima"`` is the worst case for the merge (tens of thousands of seeds): each
    merge must re-queue only the edges of the smaller region, so the queue work stays a small multiple of the
    number of edges instead of growing with the number of seeds (as the timing benchmark shows it did)."""
    import heapq
    from types import SimpleNamespace

    from subobject_vlm.segmentation import region_adjacency, regions

    counts = {"push": 0, "pop": 0}

    def counted(name, fn):
        def wrapper(*args):
            counts[name] += 1
            return fn(*args)

        return wrapper

    counting_heapq = SimpleNamespace(
        heapify=heapq.heapify, heappush=counted("push", heapq.heappush), heappop=counted("pop", heapq.heappop)
    )
    monkeypatch.setattr(regions, "heapq", counting_heapq)
    probs = np.random.default_rng(0).random((128, 128), dtype=np.float32)
    label_map = epoc(probs, 0.1, seeds="minima")  # every seed a region, no merge yet
    num_regions = int(label_map.max()) + 1
    num_edges = len(region_adjacency(label_map, probs)[0])
    merged = epoc(probs, 0.1, max_tokens=64, seeds="minima")
    assert int(merged.max()) + 1 == 64 and num_regions > 2000
    assert counts["push"] < 2 * num_edges  # re-queued edges (1.23 x the edges here)
    assert counts["pop"] >= num_regions - 64  # one pop per merge at least: the merges went through the queue


def test_one_pixel_wide_maps_merge_across_their_real_borders():
    """On a (H, 1) map the vertical pass of region_adjacency has step W = 1, like the horizontal one, and must
    not be shifted as that one is (found by hypothesis, tests/test_properties.py, in a draft that did)."""
    from subobject_vlm.segmentation import region_adjacency

    probs = np.array([[0.0], [1.0], [0.0]], np.float32)
    edges, weight_sum, border_length = region_adjacency(np.array([[0], [1], [2]]), probs)
    assert edges.tolist() == [[0, 1], [1, 2]] and border_length.tolist() == [1, 1]
    np.testing.assert_allclose(weight_sum, [0.5, 0.5])
    assert epoc(probs, 0.0, min_area=2).tolist() == [[0], [0], [0]]
    assert epoc(probs.T, 0.0, min_area=2).tolist() == [[0, 0, 0]]
