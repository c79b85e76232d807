"""Subobject token embedding: pool backbone features over the regions of a label map.

A segmentation is a label map ``(B, H, W)`` of integer labels ``0..n_i-1`` (every pixel labelled). Each
region becomes one token built from three parts, all computed from the label map, never from dense masks.

How: one pass over the pixels cuts every row into *runs* of equal label (a comparison with the left
neighbour and a ``nonzero``). Everything else works on the K runs (K <= H*W, typically a few per region
and row): boxes are ``scatter_reduce`` min/max over runs; the content lists the E (run, feature cell)
overlaps (about K for features coarser than the label map, H*W for features as fine, e.g. raw pixels),
sums them per (region, cell) pair with a ``unique`` where cells are coarser than pixels, and gathers the
P overlapping pairs' features with one ``index_add_``; shapes are 4 difference-array entries per run
summed with one ``bincount`` and a ``cumsum`` over the (n, R*R) output. Cost ``O(H*W + K + E log E + P*C
+ n*R*R)``; memory ``O(K + E + P*C + n*R*R)``, never ``O(n*H*W)`` nor ``O(n*h*w)``. On 256 regions of a
1024x1024 map with 384x32x32 features this takes ~12 ms on one CPU thread and ~15 MB
(``benchmarks/bench_pooling.py``).

* **content** (:func:`mask_pool`): the area-weighted mean of the backbone features over the region.
  The feature map ``(C, h, w)`` is read as a piecewise-constant image: feature cell ``(i, j)`` covers the
  rectangle ``[i*H/h, (i+1)*H/h) x [j*W/w, (j+1)*W/w)`` of the label map, pixel ``(y, x)`` covers
  ``[y, y+1) x [x, x+1)``. The content of region ``r`` is ``sum_c A(r, c) F_c / sum_c A(r, c)`` where
  ``A(r, c)`` is the exact area of the overlap between region ``r`` and cell ``c``. This equals the mean of
  the features upsampled with nearest-neighbour interpolation to any grid on which both the label map and
  the feature cells are exact (e.g. ``(H*h, W*w)``). A region smaller than one feature cell gets that
  cell's feature; a region straddling cells gets their area-weighted mix. Works whether the label map is
  larger, smaller or equal to the feature grid.
* **box** (:func:`region_boxes`): the region's bounding box, normalised to ``[0, 1]`` by the label map size,
  as ``(cx, cy, w, h)``; pixel ``x`` spans ``[x, x+1)``, so a region covering the whole image has box
  ``(0.5, 0.5, 1, 1)``.
* **shape** (:func:`region_shapes`): an ``R x R`` picture of the region inside its box: bin ``(i, j)`` holds
  the fraction of the bin's area covered by the region (the box is cut into ``R x R`` equal bins, exact
  area overlaps as for the content, i.e. RoIAlign with exact area averaging of the binary mask).

:class:`MaskPooledEmbedding` concatenates ``[content (C), box (4), shape (R*R)]`` and projects it with an MLP
(``Linear -> GELU -> ... -> Linear``) to the language model width.

All overlaps are computed in integer units (exact), sums of features are accumulated in float32 whatever
the feature dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass
class _Regions:
    """Label maps indexed once, as horizontal runs of equal label (one run = one row segment of a region).

    Everything after run extraction (boxes, shapes, pooling weights) is computed on runs, so the per-pixel
    work is one comparison and one ``nonzero`` over the label map.
    """

    run_region: torch.Tensor  # (K,) int64 global region id (label + offset of its image)
    run_y: torch.Tensor  # (K,) int64 row of the run
    run_x0: torch.Tensor  # (K,) int64 first column of the run
    run_x1: torch.Tensor  # (K,) int64 one past the last column
    num_tokens: torch.Tensor  # (B,) int64
    image_of_region: torch.Tensor  # (n,) int64, n = num_tokens.sum()
    pixel_counts: torch.Tensor  # (n,) int64
    height: int
    width: int

    @property
    def total(self) -> int:
        return int(self.image_of_region.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.num_tokens.shape[0])


def _index_regions(label_maps: torch.Tensor, num_tokens: torch.Tensor | None = None) -> _Regions:
    """Validate ``label_maps`` (B, H, W) int and ``num_tokens`` (B,), and cut the label maps into runs."""
    if not isinstance(label_maps, torch.Tensor):
        raise TypeError(f"label_maps must be a torch.Tensor, got {type(label_maps).__name__}")
    if label_maps.ndim != 3:
        raise ValueError(f"label_maps must have shape (B, H, W), got {tuple(label_maps.shape)}")
    if label_maps.dtype.is_floating_point or label_maps.dtype.is_complex or label_maps.dtype == torch.bool:
        raise TypeError(f"label_maps must have an integer dtype, got {label_maps.dtype}")
    batch, height, width = label_maps.shape
    if batch == 0 or height == 0 or width == 0:
        raise ValueError(f"label_maps must be non-empty, got shape {tuple(label_maps.shape)}")
    device = label_maps.device
    rows = label_maps.reshape(batch * height, width)  # (B*H, W)
    change = torch.ones(batch * height, width, dtype=torch.bool, device=device)  # (B*H, W) run starts
    change[:, 1:] = rows[:, 1:] != rows[:, :-1]
    starts = change.view(-1).nonzero().squeeze(1)  # (K,) flat index of each run's first pixel
    stops = torch.cat(
        [starts[1:], starts.new_tensor([batch * height * width])]
    )  # (K,) every row starts a run
    row = torch.div(starts, width, rounding_mode="floor")  # (K,) row in the batch
    run_x0, run_x1 = starts - row * width, stops - row * width  # (K,), (K,)
    run_image = torch.div(row, height, rounding_mode="floor")  # (K,)
    run_y = row - run_image * height  # (K,)
    run_label = rows.reshape(-1)[starts].long()  # (K,) every pixel of a run has its label
    if int(run_label.min()) < 0:
        raise ValueError(
            f"label_maps contain negative labels (min {int(run_label.min())}); labels must be 0..n-1"
        )
    max_label = torch.zeros(batch, dtype=torch.long, device=device).scatter_reduce(
        0, run_image, run_label, "amax"
    )  # (B,)
    if num_tokens is None:
        num_tokens = max_label + 1
    else:
        num_tokens = torch.as_tensor(num_tokens, device=device)
        if num_tokens.dtype.is_floating_point or num_tokens.dtype == torch.bool:
            raise TypeError(f"num_tokens must have an integer dtype, got {num_tokens.dtype}")
        num_tokens = num_tokens.long().reshape(-1)
        if num_tokens.shape[0] != batch:
            raise ValueError(
                f"num_tokens has {num_tokens.shape[0]} entries but label_maps has batch size {batch}"
            )
        too_large = (max_label >= num_tokens).nonzero().flatten()
        if too_large.numel():
            b = int(too_large[0])
            raise ValueError(
                f"label map {b} contains label {int(max_label[b])} but num_tokens[{b}] = {int(num_tokens[b])}; "
                "labels must be in 0..num_tokens-1"
            )
    offsets = torch.cumsum(num_tokens, 0) - num_tokens  # (B,)
    total = int(num_tokens.sum())
    run_region = run_label + offsets[run_image]  # (K,)
    pixel_counts = torch.zeros(total, dtype=torch.long, device=device).index_add_(
        0, run_region, run_x1 - run_x0
    )  # (n,)
    image_of_region = torch.repeat_interleave(torch.arange(batch, device=device), num_tokens)  # (n,)
    empty = (pixel_counts == 0).nonzero().flatten()
    if empty.numel():
        r = int(empty[0])
        b = int(image_of_region[r])
        raise ValueError(
            f"region {r - int(offsets[b])} of label map {b} is empty (num_tokens[{b}] = {int(num_tokens[b])}); "
            f"{empty.numel()} empty region(s) in total. Labels must be exactly 0..num_tokens-1, each present."
        )
    return _Regions(
        run_region, run_y, run_x0, run_x1, num_tokens, image_of_region, pixel_counts, height, width
    )


def _cell_span(start: torch.Tensor, stop: torch.Tensor, unit: int, cell: torch.Tensor | int):
    """Cells overlapped by the interval ``[start*unit, stop*unit)`` when cell k is ``[k*cell, (k+1)*cell)``.

    Returns (first cell, number of cells), both (K,) int64.
    """
    first = torch.div(start * unit, cell, rounding_mode="floor")
    last = torch.div(stop * unit - 1, cell, rounding_mode="floor")
    return first, last - first + 1


def _run_cell_areas(
    regions: _Regions,
    y0: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    unit: tuple[int, int],
    cell: tuple[torch.Tensor | int, torch.Tensor | int],
    grid: tuple[int, int],
) -> torch.Tensor:
    """Exact overlap area of every region with every cell of a grid, from the runs.

    Run k covers rows ``[y0, y0+1)`` and columns ``[x0, x1)`` (K,) int64; in integer units a pixel is
    ``unit = (uy, ux)`` wide and cell (i, j) spans ``[i*cy, (i+1)*cy) x [j*cx, (j+1)*cx)`` with
    ``cell = (cy, cx)`` ints or (K,) per-run sizes; ``grid = (gy, gx)`` cells. Returns (n * gy * gx,) float64
    overlap areas indexed ``region * gy * gx + i * gx + j`` (exact integers).

    A run covers a contiguous range of cells of one cell row: full cells in the middle, partial cells at
    both ends. It is written as 4 entries of a difference array along the cell columns (cumsum restores the
    areas), so the cost is O(K) whatever the run length; a run whose row straddles two cell rows is
    repeated once per cell row.
    """
    (uy, ux), (cy, cx), (gy, gx) = unit, cell, grid
    first_y, count_y = _cell_span(y0, y0 + 1, uy, cy)  # (K,)
    first_x, count_x = _cell_span(x0, x1, ux, cx)  # (K,)
    group = regions.run_region
    if bool((count_y > 1).any()):  # one copy of the run per cell row it touches
        run = torch.repeat_interleave(torch.arange(count_y.shape[0], device=y0.device), count_y)  # (E,)
        cell_row = (
            first_y[run]
            + torch.arange(run.shape[0], device=y0.device)
            - (torch.cumsum(count_y, 0) - count_y)[run]
        )
        group, y0, x0, x1, first_x, count_x = (t[run] for t in (group, y0, x0, x1, first_x, count_x))
        cy = cy[run] if isinstance(cy, torch.Tensor) else cy
        cx = cx[run] if isinstance(cx, torch.Tensor) else cx
    else:
        cell_row = first_y
    oy = torch.minimum((y0 + 1) * uy, (cell_row + 1) * cy) - torch.maximum(y0 * uy, cell_row * cy)  # (E,)
    last_x = first_x + count_x - 1  # (E,)
    lead = x0 * ux - first_x * cx  # (E,) part of the first cell before the run
    trail = (last_x + 1) * cx - x1 * ux  # (E,) part of the last cell after the run
    base = (group * gy + cell_row) * (gx + 1)  # (E,) difference array row of (region, cell row)
    keys = torch.cat([base + first_x, base + first_x + 1, base + last_x, base + last_x + 1])  # (4E,)
    values = torch.cat([oy * (cx - lead), oy * lead, -oy * trail, oy * (trail - cx)]).double()  # (4E,)
    diff = torch.bincount(keys, weights=values, minlength=regions.total * gy * (gx + 1))
    return diff.view(regions.total * gy, gx + 1).cumsum(1)[:, :gx].reshape(-1)  # (n * gy * gx,)


def _box_extents(regions: _Regions) -> torch.Tensor:
    """Pixel-edge boxes (x0, y0, x1, y1), x1/y1 exclusive, of every region: (n, 4) int64."""
    n, g = regions.total, regions.run_region
    big = max(regions.height, regions.width) + 1
    x0 = torch.full((n,), big, dtype=torch.long, device=g.device).scatter_reduce(0, g, regions.run_x0, "amin")
    y0 = torch.full((n,), big, dtype=torch.long, device=g.device).scatter_reduce(0, g, regions.run_y, "amin")
    x1 = torch.zeros(n, dtype=torch.long, device=g.device).scatter_reduce(0, g, regions.run_x1, "amax")
    y1 = torch.zeros(n, dtype=torch.long, device=g.device).scatter_reduce(0, g, regions.run_y + 1, "amax")
    return torch.stack([x0, y0, x1, y1], dim=1)  # (n, 4)


def _boxes_cxcywh(extents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 4) int64 pixel boxes x0, y0, x1, y1 -> (n, 4) float32 normalised (cx, cy, w, h)."""
    scale = torch.tensor([width, height], dtype=torch.float32, device=extents.device)
    lo = extents[:, :2].float() / scale  # (n, 2)
    hi = extents[:, 2:].float() / scale  # (n, 2)
    return torch.cat([(lo + hi) / 2, hi - lo], dim=1)  # (n, 4)


def _shapes(regions: _Regions, extents: torch.Tensor, resolution: int) -> torch.Tensor:
    """Fraction of each of the R x R bins of a region's box covered by the region: (n, R, R) float32."""
    r, g, n = resolution, regions.run_region, regions.total
    box = extents[g]  # (K, 4) box of each run's region
    # a pixel is R units wide, a bin is (box size in pixels) units wide: R bins span the box exactly
    areas = _run_cell_areas(
        regions,
        regions.run_y - box[:, 1],
        regions.run_x0 - box[:, 0],
        regions.run_x1 - box[:, 0],
        unit=(r, r),
        cell=(box[:, 3] - box[:, 1], box[:, 2] - box[:, 0]),
        grid=(r, r),
    ).view(n, r * r)  # (n, R*R)
    bin_area = ((extents[:, 2] - extents[:, 0]) * (extents[:, 3] - extents[:, 1])).double()  # (n,)
    return (areas / bin_area[:, None]).float().view(n, r, r)


def _check_features(features: torch.Tensor, regions: _Regions) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must have shape (B, C, h, w), got {shape}")
    if not features.dtype.is_floating_point:
        raise TypeError(f"features must be floating point, got {features.dtype}")
    if features.shape[0] != regions.batch_size:
        raise ValueError(
            f"features have batch size {features.shape[0]} but label_maps have batch size {regions.batch_size}"
        )
    if features.shape[2] == 0 or features.shape[3] == 0:
        raise ValueError(f"features must have a non-empty grid, got {tuple(features.shape)}")


def _run_cell_overlaps(
    regions: _Regions, unit: tuple[int, int], cell: tuple[int, int], grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every overlapping (run, feature cell) pair, listed: ``(run (E,), cell (E,), area (E,))`` int64.

    Units as in :func:`_run_cell_areas` (a pixel is ``unit`` wide, a cell ``cell``; ``grid`` cells). A run
    overlaps a block of ``count_y x count_x`` cells; the blocks are expanded with ``repeat_interleave``, so the
    cost is ``O(K + E)``: E is about K for features coarser than the label map, H*W for features as fine.
    """
    (uy, ux), (cy, cx), (_gy, gx) = unit, cell, grid
    y0, x0, x1 = regions.run_y, regions.run_x0, regions.run_x1  # (K,)
    first_y, count_y = _cell_span(y0, y0 + 1, uy, cy)  # (K,)
    first_x, count_x = _cell_span(x0, x1, ux, cx)  # (K,)
    per_run = count_y * count_x  # (K,) cells overlapped by each run
    run = torch.repeat_interleave(torch.arange(per_run.shape[0], device=y0.device), per_run)  # (E,)
    within = torch.arange(run.shape[0], device=y0.device) - (torch.cumsum(per_run, 0) - per_run)[run]  # (E,)
    row = first_y[run] + torch.div(within, count_x[run], rounding_mode="floor")  # (E,) cell row
    col = first_x[run] + within % count_x[run]  # (E,) cell column
    oy = torch.minimum((y0[run] + 1) * uy, (row + 1) * cy) - torch.maximum(y0[run] * uy, row * cy)  # (E,)
    ox = torch.minimum(x1[run] * ux, (col + 1) * cx) - torch.maximum(x0[run] * ux, col * cx)  # (E,)
    return run, row * gx + col, oy * ox


def _pool(features: torch.Tensor, regions: _Regions) -> torch.Tensor:
    """Area-weighted mean of ``features`` (B, C, h, w) over every region: (n, C) float32."""
    batch, channels, fh, fw = features.shape
    n, height, width = regions.total, regions.height, regions.width
    # a pixel is (h, w) units, a feature cell (H, W) units: exact integer overlaps with the feature cells
    run, cell, area = _run_cell_overlaps(regions, unit=(fh, fw), cell=(height, width), grid=(fh, fw))  # (E,)
    region = regions.run_region[run]  # (E,)
    if fh < height or fw < width:  # cells coarser than pixels: runs of one region share cells, sum them
        pair, inverse = torch.unique(region * (fh * fw) + cell, return_inverse=True)  # (P,), (E,)
        area = torch.zeros(pair.shape[0], dtype=torch.long, device=area.device).index_add_(0, inverse, area)
        region = torch.div(pair, fh * fw, rounding_mode="floor")  # (P,)
        cell = pair % (fh * fw)  # (P,)
    total_area = regions.pixel_counts.double() * (fw * fh)  # (n,)
    weights = (area.double() / total_area[region]).float()  # (P,)
    flat = features.permute(0, 2, 3, 1).reshape(batch * fh * fw, channels)  # (B*h*w, C)
    rows = flat[regions.image_of_region[region] * (fh * fw) + cell].float()  # (P, C)
    content = torch.zeros(n, channels, dtype=torch.float32, device=features.device)
    return content.index_add_(0, region, rows * weights[:, None])  # (n, C)


def mask_pool(
    features: torch.Tensor, label_maps: torch.Tensor, num_tokens: torch.Tensor | None = None
) -> torch.Tensor:
    """Area-weighted mean of the features over every region (definition in the module docstring).

    Args:
        features: (B, C, h, w) float backbone features.
        label_maps: (B, H, W) integer labels 0..n_i-1, every label present.
        num_tokens: (B,) region counts n_i; default max label + 1 per image.

    Returns:
        (sum n_i, C) float32, regions of image 0 first, in label order. Differentiable w.r.t. ``features``.
    """
    regions = _index_regions(label_maps, num_tokens)
    _check_features(features, regions)
    return _pool(features, regions)


def region_boxes(label_maps: torch.Tensor, num_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Bounding boxes of every region as normalised (cx, cy, w, h): (sum n_i, 4) float32 in [0, 1].

    ``label_maps`` is (B, H, W) int; pixel ``x`` spans ``[x, x+1)``, coordinates are divided by W (x) and H (y).
    """
    regions = _index_regions(label_maps, num_tokens)
    return _boxes_cxcywh(_box_extents(regions), regions.height, regions.width)


def region_shapes(
    label_maps: torch.Tensor, num_tokens: torch.Tensor | None = None, resolution: int = 8
) -> torch.Tensor:
    """Low-resolution shape of every region inside its box: (sum n_i, R, R) float32 in [0, 1].

    Bin (i, j) holds the fraction of the area of bin (i, j) of the region's box (cut into R x R equal bins)
    covered by the region.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    regions = _index_regions(label_maps, num_tokens)
    return _shapes(regions, _box_extents(regions), resolution)


class MaskPooledEmbedding(nn.Module):
    """One token per region: MLP([content mean (C), box (4), shape (R*R)]) -> (D,).

    Args:
        in_channels: C, the backbone feature channels.
        out_features: D, the language model hidden size.
        shape_resolution: R, side of the region shape picture.
        projector_depth: number of Linear layers (>= 1), GELU between them.
        projector_hidden_size: width of the hidden layers (default ``out_features``).
        projector_hidden_act: activation between layers (``gelu``, ``relu``, ``silu``).
    """

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        shape_resolution: int = 8,
        projector_depth: int = 2,
        projector_hidden_size: int | None = None,
        projector_hidden_act: str = "gelu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_features < 1:
            raise ValueError(f"in_channels and out_features must be >= 1, got {in_channels}, {out_features}")
        if shape_resolution < 1:
            raise ValueError(f"shape_resolution must be >= 1, got {shape_resolution}")
        if projector_depth < 1:
            raise ValueError(f"projector_depth must be >= 1, got {projector_depth}")
        if projector_hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"projector_hidden_act must be one of {sorted(_ACTIVATIONS)}, got {projector_hidden_act!r}"
            )
        self.in_channels = in_channels
        self.shape_resolution = shape_resolution
        hidden = projector_hidden_size or out_features
        widths = [in_channels + 4 + shape_resolution**2] + [hidden] * (projector_depth - 1) + [out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            if i > 0:
                layers.append(_ACTIVATIONS[projector_hidden_act]())
            layers.append(nn.Linear(a, b, bias=bias))
        self.projector = nn.Sequential(*layers)

    def region_features(
        self, features: torch.Tensor, label_maps: torch.Tensor, num_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projector inputs before the MLP: ((sum n_i, C + 4 + R*R) float32, tokens_per_image (B,) int64)."""
        regions = _index_regions(label_maps, num_tokens)
        _check_features(features, regions)
        if features.shape[1] != self.in_channels:
            raise ValueError(f"features have {features.shape[1]} channels, expected {self.in_channels}")
        extents = _box_extents(regions)  # (n, 4)
        content = _pool(features, regions)  # (n, C)
        boxes = _boxes_cxcywh(extents, regions.height, regions.width)  # (n, 4)
        shapes = _shapes(regions, extents, self.shape_resolution).flatten(1)  # (n, R*R)
        return torch.cat([content, boxes, shapes], dim=1), regions.num_tokens

    def forward(
        self, features: torch.Tensor, label_maps: torch.Tensor, num_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed every region.

        Args:
            features: (B, C, h, w) float backbone features (any float dtype; pooled in float32).
            label_maps: (B, H, W) integer labels 0..n_i-1, every pixel labelled, every label present.
            num_tokens: optional (B,) region counts n_i (default: max label + 1 per image).

        Returns:
            tokens: (sum n_i, D) in the projector's dtype, image 0's regions first, in label order.
            tokens_per_image: (B,) int64, n_i.
        """
        inputs, tokens_per_image = self.region_features(features, label_maps, num_tokens)
        weight = self.projector[0].weight
        return self.projector(inputs.to(weight.dtype)), tokens_per_image


__all__ = ["MaskPooledEmbedding", "mask_pool", "region_boxes", "region_shapes"]
