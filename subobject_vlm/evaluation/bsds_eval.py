"""One-call BSDS500 evaluation of a tokenizer: boundary benchmark + token metrics at equal token counts.

``eval_bsds`` runs, on every image of a BSDS-layout split (``images/<split>/*.jpg`` +
``groundTruth/<split>/*.mat``):

1. the boundary model once (in this process), giving a probability map;
2. in a process pool: the BSDS boundary benchmark of that map (99 thresholds, ODS / OIS / AP; after
   non-maximum suppression by default, as edge detectors are evaluated), and at each
   token budget ``N`` our tokenizer ``segment(image, model, max_tokens=N)`` plus every baseline at exactly
   the per-image token count ``n_i`` our tokenizer produced (``segment(image, "slic", max_tokens=n_i)``),
   each scored with ``segmentation_metrics``;

then writes ``metrics.json``, ``pr_curve.png`` and ``token_metrics.png`` to ``out_dir``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..segmentation.registry import LABEL_MAP, registered_names, tokenizer_kind
from ..segmentation.settings import SegmentationSettings
from .boundary_benchmark import (
    bsds_thresholds,
    default_workers,
    evaluate_boundary_image,
    precision_recall_f,
    process_pool,
    summarize_boundary_counts,
)
from .edges import non_maximum_suppression
from .matching import BSDS_MAX_DIST
from .region_metrics import segmentation_metrics


def _token_metric_names(tolerance: float) -> list[str]:
    return [
        "tokens",
        "boundary_recall",
        "boundary_precision",
        "boundary_f",
        f"boundary_recall_{tolerance:g}px",
        f"boundary_precision_{tolerance:g}px",
        "undersegmentation_error",
        "achievable_segmentation_accuracy",
    ]


def _evaluate_sample(task: dict) -> dict:
    """Everything for one image (runs in a worker): boundary counts and token metrics per ``max_tokens``."""
    from ..segmentation import segment_image

    image, probs, segs, bdrys = task["image"], task["probs"], task["segmentations"], task["boundaries"]
    result: dict = {"name": task["name"], "boundary_counts": None, "tokens": {}}
    if probs is not None and task["thresholds"] is not None:
        benchmarked = non_maximum_suppression(probs) if task["nms"] else probs  # EPOC gets the raw map
        result["boundary_counts"] = evaluate_boundary_image(
            benchmarked, bdrys, task["thresholds"], task["max_dist"], matcher=task["matcher"]
        ).tolist()
    ours, baselines = task["ours"], task["baselines"]
    for settings in task["tokenizer"]:  # one per max_tokens
        labels = segment_image(image, settings, boundary_probs=probs)
        metrics = {ours: segmentation_metrics(labels, segs, bdrys, task["tolerance"], task["max_dist"])}
        count = metrics[ours]["tokens"]
        for name in baselines:
            baseline_labels = segment_image(image, SegmentationSettings(name, max_tokens=count))
            metrics[name] = segmentation_metrics(
                baseline_labels, segs, bdrys, task["tolerance"], task["max_dist"]
            )
        result["tokens"][str(settings.max_tokens)] = metrics
    return result


def _summarize_tokens(
    per_image: list[dict], names: list[str], max_tokens: Sequence[int], tolerance: float
) -> dict:
    """tokenizer -> max_tokens -> dataset means of every token metric, plus BSDS-pooled boundary P / R / F."""
    summary: dict = {}
    for name in names:
        summary[name] = {}
        for cap in max_tokens:
            rows = [r["tokens"][str(cap)][name] for r in per_image]
            entry = {m: float(np.mean([row[m] for row in rows])) for m in _token_metric_names(tolerance)}
            recall, precision, f = precision_recall_f(np.sum([row["counts"] for row in rows], axis=0))
            entry["pooled"] = {"recall": float(recall), "precision": float(precision), "f": float(f)}
            summary[name][str(cap)] = entry
    return summary


def eval_bsds(
    root: str | os.PathLike | None = None,
    split: str = "val",
    model: str | object = "default",
    max_tokens: Sequence[int] = (64, 128, 256),
    baselines: Sequence[str] | None = None,
    out_dir: str | os.PathLike = "eval_bsds",
    limit: int | None = None,
    thresholds: int | Sequence[float] | None = 99,
    *,
    boundary_probs_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    segment_options: dict | None = None,
    nms: bool = True,
    max_dist: float = BSDS_MAX_DIST,
    tolerance: float = 2,
    matcher: str = "exact",
    workers: int | None = None,
    progress: bool = True,
    **model_options,
) -> dict:
    """Evaluate a tokenizer on a BSDS500-layout split; write ``metrics.json`` and PNG plots to ``out_dir``.

    Args:
        root: BSDS folder (default: ``find_bsds_root``); any split present there, ``test`` included.
        split: ``train``, ``val`` or ``test``.
        model: boundary model name / path / object (see ``load_boundary_model``) or a label-map tokenizer's name
            (``patch``, ``slic``, ``felzenszwalb``, ...: no boundary benchmark).
        max_tokens: the token budgets of our tokenizer, one run each.
        baselines: label-map tokenizers run at exactly our per-image token count (the model itself is skipped);
            default: every registered one (``registered_names("label_map")``).
        out_dir: output folder (created).
        limit: first ``limit`` images only.
        thresholds: boundary benchmark thresholds (number or sequence); ``None`` skips the benchmark.
        boundary_probs_fn: any ``(H, W, 3) uint8 -> (H, W) float [0, 1]`` function used instead of ``model``.
        segment_options: EPOC's other options (``threshold``, ``min_area``, ...; default: the settings').
        nms: benchmark the map after ``non_maximum_suppression`` (the edge-detection protocol of HED, RCF,
            Structured Edges); the tokenizer always segments the raw map.
        max_dist: BSDS matching tolerance (fraction of the diagonal).
        tolerance: pixel tolerance of the superpixel-style boundary recall / precision.
        matcher: ``"exact"`` or ``"csa"`` (pyEdgeEval, slow).
        workers: processes (default ``default_workers()``; 0 runs everything in this process).
        progress: tqdm progress bar.
        **model_options: passed to ``load_boundary_model``.

    Returns:
        The dict written to ``metrics.json``: ``config``, ``boundary`` (ODS / OIS / AP / R50 / curve, or
        ``None``), ``tokens`` (tokenizer -> max_tokens -> metric means), ``per_image`` and ``seconds``.
    """
    from tqdm.auto import tqdm

    from ..data.bsds import find_bsds_root, load_bsds
    from ..image_utils import load_image

    started = time.perf_counter()
    if not max_tokens:
        raise ValueError("max_tokens must list at least one token budget")
    if baselines is None:
        baselines = [name for name in registered_names(LABEL_MAP) if not name.endswith(":")]
    for name in baselines:  # checked before any image loads; a mistyped name lists the valid ones
        if tokenizer_kind(name) != LABEL_MAP:
            raise ValueError(
                f"baselines: {name!r} is a boundary model; name label-map tokenizers "
                f"({', '.join(registered_names(LABEL_MAP))})"
            )
    is_baseline = (
        isinstance(model, (str, os.PathLike))
        and boundary_probs_fn is None
        and tokenizer_kind(model) == LABEL_MAP
    )
    if boundary_probs_fn is not None:
        ours = getattr(boundary_probs_fn, "__name__", "custom")
    else:
        ours = str(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name", "model")
    epoc_options = {} if is_baseline else segment_options or {}  # a baseline makes exactly max_tokens
    # one tokenizer per max_tokens, checked here, once
    tokenizer = [SegmentationSettings(ours, max_tokens=cap, **epoc_options) for cap in max_tokens]
    root = find_bsds_root(root)
    samples = load_bsds(root, split, limit)
    if not samples:
        raise FileNotFoundError(f"no images in {root} split {split!r}")

    if boundary_probs_fn is not None:
        probs_fn = boundary_probs_fn
    elif is_baseline:
        probs_fn = None
    else:
        from ..segmentation import load_boundary_model

        boundary_model = (
            load_boundary_model(model, **model_options) if isinstance(model, (str, os.PathLike)) else model
        )
        probs_fn = lambda image: boundary_model.predict([image])[0]  # noqa: E731
    baselines = [b for b in baselines if b != ours]
    thresholds = None if thresholds is None or probs_fn is None else bsds_thresholds(thresholds)
    workers = default_workers() if workers is None else workers

    def task_for(sample) -> dict:
        image = load_image(sample.image_path)
        probs = None
        if probs_fn is not None:
            probs = np.clip(np.asarray(probs_fn(image), dtype=np.float32), 0.0, 1.0)
            if probs.shape != image.shape[:2]:
                raise ValueError(f"{sample.name}: boundary map {probs.shape} != image {image.shape[:2]}")
        return {
            "name": sample.name,
            "image": image,
            "probs": probs,
            "segmentations": sample.segmentations,
            "boundaries": sample.boundaries,
            "thresholds": thresholds,
            "nms": nms,
            "max_dist": max_dist,
            "matcher": matcher,
            "tolerance": tolerance,
            "tokenizer": tokenizer,
            "ours": ours,
            "baselines": baselines,
        }

    bar = tqdm(total=len(samples), desc=f"eval-bsds {split}", unit="img", disable=not progress)
    results: list[dict] = []
    if workers <= 1:
        for sample in samples:
            results.append(_evaluate_sample(task_for(sample)))
            bar.update()
    else:
        with process_pool(workers) as pool:
            futures: list[Future] = []
            running: set[Future] = set()
            for sample in samples:  # model forward here, metrics in the pool; a bounded queue
                future = pool.submit(_evaluate_sample, task_for(sample))
                future.add_done_callback(lambda _: bar.update())
                futures.append(future)
                running.add(future)
                if len(running) > 2 * workers:
                    _, running = wait(running, return_when=FIRST_COMPLETED)
            results = [future.result() for future in futures]
    bar.close()

    names = [r["name"] for r in results]
    boundary = None
    if thresholds is not None:
        counts = np.asarray([r["boundary_counts"] for r in results], dtype=np.int64)
        boundary = summarize_boundary_counts(counts, thresholds, names)
    tokenizers = [ours, *baselines]
    report = {
        "config": {
            "root": str(root),
            "split": split,
            "num_images": len(results),
            "model": ours,
            "budgets": [int(settings.max_tokens) for settings in tokenizer],  # (the key of earlier reports)
            "baselines": baselines,
            "thresholds": None if thresholds is None else len(thresholds),
            "nms": nms,
            "max_dist": max_dist,
            "tolerance_px": tolerance,
            "matcher": matcher,
            "segment_options": segment_options or {},
            "definitions": {
                "boundary_recall/precision/f": "BSDS protocol on the label map's thinned boundaries (one-to-one "
                "matching within max_dist * diagonal, counts pooled over annotators), mean over images; "
                "'pooled': from counts summed over the dataset",
                f"boundary_*_{tolerance:g}px": "fraction within the pixel tolerance (no one-to-one matching)",
                "undersegmentation_error": "Neubert & Protzel corrected UE, mean over annotators and images",
                "achievable_segmentation_accuracy": "ASA, mean over annotators and images",
                "baselines": "run at exactly the per-image token count of the model at each budget",
            },
        },
        "boundary": boundary,
        "tokens": _summarize_tokens(results, tokenizers, [t.max_tokens for t in tokenizer], tolerance),
        "per_image": [{"name": r["name"], "tokens": r["tokens"]} for r in results],
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_report(report, out_dir)
    return report


def write_report(report: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``metrics.json``, ``pr_curve.png`` (when there is a boundary benchmark) and ``token_metrics.png``."""
    from .plots import plot_pr_curves, plot_token_metrics

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = report["config"]
    paths = {"metrics": out_dir / "metrics.json"}
    write_json(paths["metrics"], report)
    title = f"BSDS500 {config['split']} ({config['num_images']} images)"
    if report.get("boundary"):
        paths["pr_curve"] = plot_pr_curves(
            {config["model"]: report["boundary"]}, out_dir / "pr_curve.png", title
        )
    if report.get("tokens"):
        metrics = _token_metric_names(config["tolerance_px"])[1:]
        paths["token_metrics"] = plot_token_metrics(
            report["tokens"], metrics, out_dir / "token_metrics.png", title
        )
    return paths


__all__ = ["eval_bsds", "write_report"]
