# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernel of EPOC's watershed flooding (optional; ``epoc._flood_numpy`` computes the same labels).

Works on a grid padded by one pixel, as ``epoc._flood_numpy`` does: ``state`` holds the flooding level
(``< levels``) of each unlabelled pixel and ``DONE`` (255) for labelled pixels and the padding. Level by
level, the unlabelled pixels of that level touching a labelled pixel are labelled, then the flood spreads
in breadth-first waves into unlabelled neighbours of that level or lower. Every pixel of a wave takes the
label of its lowest labelled 4-neighbour, all from the labels before the wave (ties: the smaller label), so
the result does not depend on the order inside a wave. O(pixels flooded).
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t

cdef uint8_t DONE = 255


cdef inline int32_t lowest_labelled_neighbour(
    const int32_t* labels, const uint8_t* quantised, Py_ssize_t p, Py_ssize_t width
) noexcept nogil:
    """Label of the 4-neighbour of ``p`` with the lowest (quantised value, label) among those labelled
    (> 0; a wave's own labels are still negative), or 0 if none is."""
    cdef Py_ssize_t offsets[4]
    cdef Py_ssize_t j, q
    cdef int64_t key, best = -1
    offsets[0] = -width
    offsets[1] = width
    offsets[2] = -1
    offsets[3] = 1
    for j in range(4):
        q = p + offsets[j]
        if labels[q] > 0:
            key = (<int64_t>quantised[q] << 32) | labels[q]
            if best < 0 or key < best:
                best = key
    return 0 if best < 0 else <int32_t>(best & <int64_t>0xFFFFFFFF)


def flood(int32_t[:, ::1] labels, const uint8_t[:, ::1] quantised, int levels):
    """Flood in place. ``labels`` ``(H+2, W+2)`` int32 (0 = unlabelled; the one-pixel frame is never
    labelled), ``quantised`` ``(H+2, W+2)`` uint8 probabilities at 8 bits; ``levels <= 254`` flooding levels.
    Grids of ``2**31`` pixels or more are refused (``ValueError``); flood those with ``epoc._flood_numpy``.

    Memory: one byte per pixel of state, plus two int32 arrays of one entry per unlabelled pixel (the pixels
    by level, and one append-only queue holding every wave in turn: a pixel joins a wave at most once).
    """
    cdef Py_ssize_t rows = labels.shape[0], width = labels.shape[1]
    cdef Py_ssize_t size = rows * width
    if size >= 2**31 or quantised.shape[0] != rows or quantised.shape[1] != width or not 0 < levels <= 254:
        raise ValueError(f"cannot flood a {rows}x{width} grid with {levels} levels here")
    cdef int32_t* lab = &labels[0, 0]
    cdef const uint8_t* quant = &quantised[0, 0]
    cdef uint8_t[::1] state_array = np.full(size, DONE, dtype=np.uint8)  # flooding level, or DONE
    cdef uint8_t* state = &state_array[0]
    cdef int64_t[::1] starts = np.zeros(levels + 1, dtype=np.int64)
    cdef Py_ssize_t offsets[4]
    cdef Py_ssize_t i, j, p, q, row, unlabelled = 0
    cdef Py_ssize_t wave_start, wave_end, queue_end
    cdef int k
    cdef int32_t label
    offsets[0] = -width
    offsets[1] = width
    offsets[2] = -1
    offsets[3] = 1
    with nogil:  # counting sort of the unlabelled pixels by level
        for row in range(1, rows - 1):
            for p in range(row * width + 1, row * width + width - 1):
                if lab[p] == 0:
                    state[p] = <uint8_t>((<int>quant[p] * levels) >> 8)
                    starts[state[p] + 1] += 1
                    unlabelled += 1
        for k in range(levels):
            starts[k + 1] += starts[k]
    cdef int32_t[::1] todo_array = np.empty(max(unlabelled, 1), dtype=np.int32)  # unlabelled pixels by level
    cdef int32_t[::1] queue_array = np.empty(max(unlabelled, 1), dtype=np.int32)  # every wave, in turn
    cdef int64_t[::1] fill = np.array(starts[:levels], dtype=np.int64)
    cdef int32_t* todo = &todo_array[0]
    cdef int32_t* queue = &queue_array[0]
    with nogil:
        for row in range(1, rows - 1):
            for p in range(row * width + 1, row * width + width - 1):
                if state[p] != DONE:
                    todo[fill[state[p]]] = <int32_t>p
                    fill[state[p]] += 1
        queue_end = 0
        for k in range(levels):
            # A wave's labels are written negated, so that no pixel of the wave sees another's label, then
            # made positive once the whole wave is labelled.
            wave_start = queue_end
            for i in range(starts[k], starts[k + 1]):
                p = todo[i]
                if state[p] == DONE:
                    continue
                label = lowest_labelled_neighbour(lab, quant, p, width)
                if label > 0:
                    lab[p] = -label
                    state[p] = DONE
                    queue[queue_end] = <int32_t>p
                    queue_end += 1
            while queue_end > wave_start:
                wave_end = queue_end
                for i in range(wave_start, wave_end):
                    lab[queue[i]] = -lab[queue[i]]
                for i in range(wave_start, wave_end):
                    p = queue[i]
                    for j in range(4):
                        q = p + offsets[j]
                        if state[q] <= k:  # unlabelled, at this level or a lower one left behind
                            state[q] = DONE
                            lab[q] = -lowest_labelled_neighbour(lab, quant, q, width)
                            queue[queue_end] = <int32_t>q
                            queue_end += 1
                wave_start = wave_end
