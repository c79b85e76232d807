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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from ..segmentation.registry import LABEL_MAP, registered_names, tokenizer_kind
from ..segmentation.segmenter import Segmenter
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
            baseline = SegmentationSettings(name, task["baseline_options"].get(name), max_tokens=count)
            baseline_labels = segment_image(image, baseline)
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
    baseline_options: Mapping[str, Mapping[str, Any]] | None = None,
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
        baseline_options: a baseline's own options by name (``{"sam:CKPT": {"points_per_side": 16}}``).
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

    started = time.perf_counter()
    if not max_tokens:
        raise ValueError("max_tokens must list at least one token budget")
    baselines = _check_baselines(baselines)
    is_label_map = (
        isinstance(model, (str, os.PathLike))
        and boundary_probs_fn is None
        and tokenizer_kind(model) == LABEL_MAP
    )
    tokenizer = _our_settings(model, boundary_probs_fn, max_tokens, {} if is_label_map else segment_options)
    ours = tokenizer[0].boundary_model
    root = find_bsds_root(root)
    samples = load_bsds(root, split, limit)
    if not samples:
        raise FileNotFoundError(f"no images in {root} split {split!r}")

    probs_fn = None if is_label_map else _boundary_probs_fn(model, boundary_probs_fn, model_options)
    baselines = [b for b in baselines if b != ours]
    baseline_options = {name: dict(given) for name, given in (baseline_options or {}).items()}
    for name in baseline_options:
        if name not in baselines:
            raise ValueError(
                f"baseline_options names {name!r}, which is not among the baselines ({', '.join(baselines)})"
            )
    thresholds = None if thresholds is None or probs_fn is None else bsds_thresholds(thresholds)
    options = {"thresholds": thresholds, "nms": nms, "max_dist": max_dist, "matcher": matcher}
    options.update(tolerance=tolerance, tokenizer=tokenizer, ours=ours, baselines=baselines)
    options["baseline_options"] = baseline_options
    bar = tqdm(total=len(samples), desc=f"eval-bsds {split}", unit="img", disable=not progress)
    workers = default_workers() if workers is None else workers
    results = _evaluate_all(samples, lambda sample: _task(sample, probs_fn, options), workers, bar.update)
    bar.close()

    config = {
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
        **({"baseline_options": baseline_options} if baseline_options else {}),
        "definitions": _definitions(tolerance),
    }
    report = _report(config, results, thresholds, [t.max_tokens for t in tokenizer], started)
    write_report(report, out_dir)
    return report


def _check_baselines(baselines: Sequence[str] | None) -> list[str]:
    """The label-map tokenizers to compare against (default: every registered one without a checkpoint),
    checked before any image loads; a mistyped name lists the valid ones."""
    if baselines is None:
        return registered_names(LABEL_MAP, families=False)
    for name in baselines:
        if tokenizer_kind(name) != LABEL_MAP:
            raise ValueError(
                f"baselines: {name!r} is a boundary model; name label-map tokenizers "
                f"({', '.join(registered_names(LABEL_MAP))})"
            )
    return list(baselines)


def _our_settings(
    model: str | object,
    boundary_probs_fn: Callable | None,
    max_tokens: Sequence[int],
    segment_options: dict | None,
) -> list[SegmentationSettings]:
    """Our tokenizer, one settings per budget (checked here, once), named after the function, the model's name
    or path, or the model object's ``name``."""
    if boundary_probs_fn is not None:
        ours = getattr(boundary_probs_fn, "__name__", "custom")
    else:
        ours = str(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name", "model")
    return [SegmentationSettings(ours, max_tokens=cap, **(segment_options or {})) for cap in max_tokens]


def _boundary_probs_fn(
    model: str | object, boundary_probs_fn: Callable | None, model_options: dict
) -> Callable[[np.ndarray], np.ndarray]:
    """``(H, W, 3) uint8 -> (H, W)`` boundary map of ours: the function given, the model object's, or a
    ``Segmenter``'s (the boundary model named, once per image: nothing to cache)."""
    if boundary_probs_fn is not None:
        return boundary_probs_fn
    if not isinstance(model, (str, os.PathLike)):
        return lambda image: model.predict([image])[0]
    segmenter = Segmenter(SegmentationSettings(str(model), model_options), cache_size=0)
    return lambda image: segmenter.boundary_maps([image])[0]


def _task(sample, probs_fn: Callable | None, options: dict) -> dict:
    """One image's work for ``_evaluate_sample``: the image, its boundary map (computed here, in this process)
    and ground truth, and ``options``."""
    from ..image_utils import load_image

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
        **options,
    }


def _evaluate_all(samples: list, task_for: Callable, workers: int, done: Callable[[], object]) -> list[dict]:
    """``_evaluate_sample`` of every sample's task, in order: here (``workers <= 1``), or with each task made
    here (the model forward) and evaluated in a pool of ``workers`` processes, at most ``2 * workers`` queued.
    ``done()`` is called as each image finishes."""
    if workers <= 1:
        results = []
        for sample in samples:
            results.append(_evaluate_sample(task_for(sample)))
            done()
        return results
    with process_pool(workers) as pool:
        futures: list[Future] = []
        running: set[Future] = set()
        for sample in samples:  # a bounded queue: the parent never holds every image's map at once
            future = pool.submit(_evaluate_sample, task_for(sample))
            future.add_done_callback(lambda _: done())
            futures.append(future)
            running.add(future)
            if len(running) > 2 * workers:
                _, running = wait(running, return_when=FIRST_COMPLETED)
        return [future.result() for future in futures]


def _definitions(tolerance: float) -> dict[str, str]:
    """What each token metric of the report means."""
    return {
        "boundary_recall/precision/f": "BSDS protocol on the label map's thinned boundaries (one-to-one "
        "matching within max_dist * diagonal, counts pooled over annotators), mean over images; "
        "'pooled': from counts summed over the dataset",
        f"boundary_*_{tolerance:g}px": "fraction within the pixel tolerance (no one-to-one matching)",
        "undersegmentation_error": "Neubert & Protzel corrected UE, mean over annotators and images",
        "achievable_segmentation_accuracy": "ASA, mean over annotators and images",
        "baselines": "run at exactly the per-image token count of the model at each budget",
    }


def _report(
    config: dict, results: list[dict], thresholds: np.ndarray | None, max_tokens: list[int], started: float
) -> dict:
    """The report of ``eval_bsds``: ``config``, the boundary benchmark (``None`` without thresholds), the token
    metrics' summaries, the per-image token metrics and the seconds since ``started``."""
    names = [r["name"] for r in results]
    boundary = None
    if thresholds is not None:
        counts = np.asarray([r["boundary_counts"] for r in results], dtype=np.int64)
        boundary = summarize_boundary_counts(counts, thresholds, names)
    tokenizers = [config["model"], *config["baselines"]]
    return {
        "config": config,
        "boundary": boundary,
        "tokens": _summarize_tokens(results, tokenizers, max_tokens, config["tolerance_px"]),
        "per_image": [{"name": r["name"], "tokens": r["tokens"]} for r in results],
        "seconds": round(time.perf_counter() - started, 2),
    }


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
