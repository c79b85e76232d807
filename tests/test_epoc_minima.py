"""EPOC with ``seeds="minima"`` on a sharp boundary map: tiny regional minima sitting on the ridges (specks
surrounded by high probability) must merge first, not survive while real regions merge into one."""

import numpy as np

from subobject_vlm.segmentation import epoc


def sharp_ridges_with_specks(size: int = 64) -> np.ndarray:
    """``(size, size)`` float32 map imitating a sharp learned boundary map: 3x3 blocks of interior (0.0) cut
    by 3-pixel ridges at 0.99, each ridge segment with a weak gap (0.3) so that the mean along a real border
    is ~0.8, and one-pixel minima (0.97) on the ridges' centre lines, under the 0.99 plateau around them."""
    probs = np.zeros((size, size), np.float32)
    third = size // 3
    centres = (third, 2 * third)
    for c in centres:
        probs[c - 1 : c + 2, :] = 0.99
        probs[:, c - 1 : c + 2] = 0.99
    for c in centres:  # one weak gap in each ridge segment between two blocks
        for start in (0, third, 2 * third):
            probs[c - 1 : c + 2, start + 6 : start + 12] = 0.3
            probs[start + 6 : start + 12, c - 1 : c + 2] = 0.3
    for c in centres:  # specks on the strong parts, away from the gaps and the crossings
        for along in (2, 4, third + 2, third + 4, 2 * third + 14, 2 * third + 16, 2 * third + 18):
            probs[c, along] = probs[along, c] = 0.97
    return probs


def test_synthetic_map_has_more_specks_than_the_budget():
    labels = epoc(sharp_ridges_with_specks(), seeds="minima")  # no budget: the full over-segmentation
    areas = np.bincount(labels.ravel())
    assert (areas >= 300).sum() == 9  # the nine blocks
    assert (areas < 30).sum() >= 28  # the specks (and the ridge plateau between them)


def test_minima_budget_merges_specks_first():
    probs = sharp_ridges_with_specks()
    for budget in (3, 6, 9):
        labels = epoc(probs, max_tokens=budget, seeds="minima")
        areas = np.bincount(labels.ravel())
        assert len(areas) == budget
        assert areas[0] / labels.size < 0.8, f"one region covers nearly everything: areas {areas.tolist()}"
        assert areas.min() >= 300, f"a speck survived at budget {budget}: areas {areas.tolist()}"
