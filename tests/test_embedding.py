"""MaskPooledEmbedding and its pieces, checked against dense (one mask per region) reference implementations."""

import pytest
import torch

from subobject_vlm.embedding import MaskPooledEmbedding, mask_pool, region_boxes, region_shapes


def random_label_map(height: int, width: int, num_labels: int, seed: int) -> torch.Tensor:
    """(H, W) int32 labels 0..n-1, all present (random labels relabelled consecutively)."""
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, num_labels, (height, width), generator=generator)
    return torch.unique(raw, return_inverse=True)[1].int()


def dense_pool(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reference content: masked mean of features and labels both upsampled (nearest) to (H*h, W*w)."""
    channels, fh, fw = features.shape
    height, width = labels.shape
    fine_labels = labels.repeat_interleave(fh, 0).repeat_interleave(fw, 1)
    fine_features = features.repeat_interleave(height, 1).repeat_interleave(width, 2)
    num = int(labels.max()) + 1
    return torch.stack([fine_features[:, fine_labels == r].mean(1) for r in range(num)])


def dense_boxes(labels: torch.Tensor) -> torch.Tensor:
    """Reference normalised (cx, cy, w, h) from one dense mask per region."""
    height, width = labels.shape
    boxes = []
    for r in range(int(labels.max()) + 1):
        ys, xs = (labels == r).nonzero(as_tuple=True)
        x0, x1 = xs.min().item() / width, (xs.max().item() + 1) / width
        y0, y1 = ys.min().item() / height, (ys.max().item() + 1) / height
        boxes.append([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    return torch.tensor(boxes)


def dense_shapes(labels: torch.Tensor, resolution: int) -> torch.Tensor:
    """Reference shape: the mask cropped to its box, upsampled R times, averaged over R x R equal blocks."""
    shapes = []
    for r in range(int(labels.max()) + 1):
        mask = labels == r
        ys, xs = mask.nonzero(as_tuple=True)
        crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].double()
        bh, bw = crop.shape
        fine = crop.repeat_interleave(resolution, 0).repeat_interleave(resolution, 1)
        shapes.append(fine.view(resolution, bh, resolution, bw).mean((1, 3)))
    return torch.stack(shapes).float()


GRIDS = [(16, 16, 4, 4), (10, 14, 4, 3), (33, 17, 5, 4), (3, 5, 6, 7), (7, 9, 7, 9)]


@pytest.mark.parametrize(("height", "width", "fh", "fw"), GRIDS)
def test_mask_pool_equals_masked_mean_of_nearest_upsampled_features(height, width, fh, fw):
    labels = random_label_map(height, width, 6, seed=height * width)
    features = torch.randn(5, fh, fw, generator=torch.Generator().manual_seed(1))
    pooled = mask_pool(features[None], labels[None])
    torch.testing.assert_close(pooled, dense_pool(features, labels), atol=1e-5, rtol=1e-5)


def test_region_smaller_than_a_feature_cell_gets_that_cells_feature():
    labels = torch.zeros(1, 32, 32, dtype=torch.int32)
    labels[0, 9:11, 17:19] = 1  # 2x2 pixels inside feature cell (1, 2) of a 4x4 grid (8 px per cell)
    features = torch.randn(1, 3, 4, 4)
    pooled = mask_pool(features, labels)
    torch.testing.assert_close(pooled[1], features[0, :, 1, 2])


def test_region_straddling_cells_gets_their_area_weighted_mix():
    labels = torch.zeros(1, 8, 8, dtype=torch.int32)
    labels[0, 0:4, 3:7] = 1  # 4x4 block: 1 column in cell 0, 3 columns in cell 1 (2x2 grid, 4 px per cell)
    features = torch.randn(1, 2, 2, 2)
    pooled = mask_pool(features, labels)
    torch.testing.assert_close(pooled[1], 0.25 * features[0, :, 0, 0] + 0.75 * features[0, :, 0, 1])


@pytest.mark.parametrize(("height", "width"), [(12, 20), (1, 7), (31, 3)])
def test_region_boxes_match_dense_mask_extents(height, width):
    labels = random_label_map(height, width, 5, seed=height)
    torch.testing.assert_close(region_boxes(labels[None]), dense_boxes(labels))


def test_region_covering_the_whole_image_has_the_unit_box():
    boxes = region_boxes(torch.zeros(1, 5, 9, dtype=torch.int64))
    torch.testing.assert_close(boxes, torch.tensor([[0.5, 0.5, 1.0, 1.0]]))


@pytest.mark.parametrize("resolution", [1, 3, 8])
def test_region_shapes_match_dense_area_resampling(resolution):
    labels = random_label_map(13, 11, 4, seed=resolution)
    torch.testing.assert_close(
        region_shapes(labels[None], resolution=resolution), dense_shapes(labels, resolution)
    )


def test_rectangular_region_fills_its_whole_shape():
    labels = torch.zeros(1, 16, 16, dtype=torch.int32)
    labels[0, 2:5, 6:13] = 1
    assert torch.equal(region_shapes(labels, resolution=8)[1], torch.ones(8, 8))


def test_batch_packs_regions_image_after_image():
    first, second = random_label_map(12, 12, 3, seed=1), random_label_map(12, 12, 7, seed=2)
    features = torch.randn(2, 4, 3, 3)
    batched = mask_pool(features, torch.stack([first, second]))
    separate = torch.cat([mask_pool(features[:1], first[None]), mask_pool(features[1:], second[None])])
    torch.testing.assert_close(batched, separate)


def test_label_map_may_be_smaller_than_the_feature_grid():
    labels = torch.tensor([[[0, 1]]])  # 1x2 label map, 2x4 features: each pixel covers 2x2 cells
    features = torch.arange(8.0).view(1, 1, 2, 4)
    torch.testing.assert_close(mask_pool(features, labels), torch.tensor([[2.5], [4.5]]))


def test_num_tokens_defaults_to_max_label_plus_one():
    labels = torch.stack([random_label_map(8, 8, 3, seed=3), random_label_map(8, 8, 5, seed=4)])
    _, tokens_per_image = MaskPooledEmbedding(2, 6)(torch.randn(2, 2, 2, 2), labels)
    assert tokens_per_image.tolist() == [3, 5]


def test_embedding_outputs_one_token_of_llm_width_per_region():
    labels = torch.stack([random_label_map(16, 16, 4, seed=5), random_label_map(16, 16, 9, seed=6)])
    tokens, tokens_per_image = MaskPooledEmbedding(8, 24, shape_resolution=4)(torch.randn(2, 8, 4, 4), labels)
    assert tokens.shape == (int(tokens_per_image.sum()), 24)
    assert tokens_per_image.dtype == torch.long


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_projector_has_depth_linear_layers_with_gelu_between(depth):
    embedding = MaskPooledEmbedding(
        8, 24, shape_resolution=4, projector_depth=depth, projector_hidden_size=16
    )
    linears = [m for m in embedding.projector if isinstance(m, torch.nn.Linear)]
    assert len(linears) == depth
    assert linears[0].in_features == 8 + 4 + 16
    assert sum(isinstance(m, torch.nn.GELU) for m in embedding.projector) == depth - 1


def test_projector_input_is_content_then_box_then_shape():
    labels = random_label_map(16, 16, 4, seed=7)[None]
    features = torch.randn(1, 3, 4, 4)
    inputs, _ = MaskPooledEmbedding(3, 5, shape_resolution=2).region_features(features, labels)
    expected = torch.cat(
        [mask_pool(features, labels), region_boxes(labels), region_shapes(labels, resolution=2).flatten(1)],
        dim=1,
    )
    torch.testing.assert_close(inputs, expected)


def test_gradients_reach_the_features():
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    labels = torch.stack([random_label_map(9, 9, 3, seed=8), random_label_map(9, 9, 4, seed=9)])
    tokens, _ = MaskPooledEmbedding(4, 6)(features, labels)
    tokens.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_features_are_pooled_in_float32(dtype):
    labels = random_label_map(64, 64, 20, seed=10)[None]
    features = torch.randn(1, 16, 8, 8).to(dtype)
    pooled = mask_pool(features, labels)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, mask_pool(features.float(), labels))


def test_integer_label_dtypes_and_non_contiguous_maps_give_the_same_result():
    labels = random_label_map(10, 12, 5, seed=11)
    features = torch.randn(1, 3, 5, 4)
    reference = mask_pool(features, labels[None].long())
    torch.testing.assert_close(mask_pool(features, labels[None].to(torch.uint8)), reference)
    transposed = mask_pool(features.transpose(2, 3), labels.t()[None])  # non-contiguous view
    torch.testing.assert_close(
        transposed, mask_pool(features.transpose(2, 3).contiguous(), labels.t().contiguous()[None])
    )


@pytest.mark.parametrize(
    ("labels", "num_tokens", "error", "message"),
    [
        (torch.zeros(4, 4, dtype=torch.int32), None, ValueError, r"\(B, H, W\)"),
        (torch.zeros(1, 4, 4), None, TypeError, "integer dtype"),
        (torch.full((1, 4, 4), -1), None, ValueError, "negative"),
        (torch.ones(1, 4, 4, dtype=torch.int32), torch.tensor([1]), ValueError, "num_tokens"),
        (torch.ones(1, 4, 4, dtype=torch.int32), None, ValueError, "empty"),
        (torch.zeros(1, 4, 4, dtype=torch.int32), torch.tensor([2]), ValueError, "empty"),
        (torch.zeros(1, 4, 4, dtype=torch.int32), torch.tensor([1, 1]), ValueError, "batch size"),
    ],
    ids=[
        "wrong-ndim",
        "float-labels",
        "negative",
        "label-beyond-num-tokens",
        "missing-label",
        "extra-token",
        "num-tokens-length",
    ],
)
def test_invalid_label_maps_raise_clear_errors(labels, num_tokens, error, message):
    with pytest.raises(error, match=message):
        region_boxes(labels, num_tokens)


def test_features_batch_mismatch_raises():
    with pytest.raises(ValueError, match="batch size"):
        mask_pool(torch.randn(2, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.int32))


def test_features_with_wrong_channel_count_raise():
    with pytest.raises(ValueError, match="channels"):
        MaskPooledEmbedding(4, 8)(torch.randn(1, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.int32))
