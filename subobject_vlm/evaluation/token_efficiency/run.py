"""The driver of ``compare-tokenizers``: every (tokenizer, budget, seed) not done yet, then the table and figures.

:func:`compare_tokenizers` runs these steps, each a function below:

1. :func:`torch_threads`: torch's threads for the experiment (1 on the CPU unless ``torch_threads`` says),
   printed with the advice;
2. :func:`prepare_experiment`: what every run shares (splits, text tokens, pixels, attribute word ids);
3. :func:`segment_jobs`: the label maps of each (tokenizer, budget), cached in ``segmentations/``; one
   ``Segmenter`` shares its caches, so a boundary model runs once per image for every budget and EPOC setting;
4. :func:`plan_runs`: per seed, train; evaluate the saved weights again (only evaluation settings changed);
   share the result of a job with identical label maps; or nothing (done before);
5. :func:`run_grid`: the runs, one line each with the grid's progress and ETA (step bars only on a terminal);
6. :func:`write_report`: ``results.md`` and the figures from every run of the experiment in ``results.jsonl``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import write_text
from ...training.config import ConfigError
from .config import (
    ComparisonConfig,
    budgets_of,
    evaluation_key,
    experiment_fingerprint,
    load_config,
    settings_digest,
)
from .data import (
    Split,
    TokenizedSplit,
    attribute_group_ids,
    attribute_token_ids,
    build_text_tokenizer,
    load_split,
    segment_split,
    token_counts,
    tokenize_split,
    tokenizer_settings,
)
from .results import append_result, experiment_runs, metric_value, read_results, results_markdown
from .train import RunData, evaluate_saved, train_run

EXAMPLES_SHOWN = 4  # val images drawn in tokens_examples.png
MAX_EPOCHS = 10  # more passes over the training set than this are warned about (over-fitting)
# measured with the quick preset's model (batch 16) on this 2-core machine; README "Does it help?"
THREADS_ADVICE = (
    "a step took 1.6x longer on 1 thread than on 2 with both cores free, but 2 threads took 3-6x longer than 1 "
    "while other jobs used the cores; set torch_threads: 2 when the cores are yours"
)
# fields a run keeps from its training when it is evaluated again from its saved weights
TRAINING_FIELDS = ("best_val_loss", "best_step", "train_seconds", "step_seconds", "curve", "wall_seconds")


def compare_tokenizers(config: str | os.PathLike | dict, base_dir: str | os.PathLike | None = None) -> Path:
    """Run every (tokenizer, budget, seed) of ``config`` not already in ``results.jsonl``; write the table and
    the plots; return the output folder. Raises ``ConfigError`` / ``DataError`` before any training.

    ``base_dir``: the folder relative data paths are taken from (default: the config file's folder, or the
    working directory for a dict); see :func:`load_config`."""
    config = load_config(config, base_dir)
    with torch_threads(config), quiet_progress_bars():
        experiment = prepare_experiment(config)
        jobs = segment_jobs(experiment)
        run_grid(experiment, jobs, plan_runs(experiment, jobs))
        write_report(config, experiment.out_dir)
        _plot_examples(experiment, jobs)
    return experiment.out_dir


# ------------------------------------------------------------------------------------- 1. threads, logs


@contextmanager
def torch_threads(config: ComparisonConfig) -> Iterator[int]:
    """Torch's intra-op threads while the experiment runs, restored after: ``torch_threads``, or 1 on the CPU
    (fast on a machine shared with other jobs); a GPU run keeps torch's default. One line says how many, why,
    and when to change it."""
    import torch

    before = torch.get_num_threads()
    threads = config.torch_threads
    if threads is None and torch.device(config.device).type == "cpu":
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
        source = "torch_threads" if config.torch_threads else "the default on the CPU"
        _log(f"{threads} torch thread{'s' * (threads != 1)} ({source}): {THREADS_ADVICE}")
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """transformers' progress bars (loading a model) off while stderr is not a terminal: a log file gets whole
    lines, no carriage returns (the experiment's own bars show on a terminal only, ``tqdm(disable=None)``)."""
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _log(message: str) -> None:
    print(f"compare-tokenizers: {message}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _number(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` places, ``n/a`` for a metric without data."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- 2. what every run shares


@dataclass
class Experiment:
    """What every run of a comparison shares: the splits and their text tokens and pixels, the text tokenizer,
    the attribute word ids, and the keys of its results (``fingerprint``: data, model and training;
    ``evaluation_key``: what is scored)."""

    config: ComparisonConfig
    out_dir: Path
    splits: dict[str, Split]
    tokenizer: Any
    tokens: dict[str, TokenizedSplit]
    pixels: dict[str, Any]  # split -> (N_images, 3, S, S) float32 tensor
    word_ids: tuple  # (attribute_ids, reference_ids, group_ids) of RunData
    fingerprint: str
    evaluation_key: str

    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.jsonl"

    def run_data(self, split: str, label_maps: np.ndarray) -> RunData:
        """What a run needs of ``split`` with these label maps."""
        counts = token_counts(label_maps)
        return RunData(
            self.splits[split], self.tokens[split], label_maps, counts, self.pixels[split], *self.word_ids
        )


def prepare_experiment(config: ComparisonConfig) -> Experiment:
    """Load (or render) both splits, warn past ``MAX_EPOCHS`` epochs, build the text tokenizer, tokenize every
    conversation once, resolve the attribute words, and compute the pixels once."""
    from ...image_processing_subobject import SubobjectImageProcessor
    from ...processing_subobject_llava import DEFAULT_CHAT_TEMPLATE, SubobjectLlavaProcessor

    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: load_split(config, split, out_dir / "data") for split in ("train", "val")}
    _warn_epochs(config, splits["train"])
    tokenizer = build_text_tokenizer(config, splits["train"])
    size = {"height": config.image_size, "width": config.image_size}
    pixel_processor = SubobjectImageProcessor(size=size, do_segment=False)
    text_processor = SubobjectLlavaProcessor(
        image_processor=pixel_processor, tokenizer=tokenizer, chat_template=DEFAULT_CHAT_TEMPLATE
    )
    tokens = {
        split: tokenize_split(text_processor, data, config.max_length) for split, data in splits.items()
    }
    word_ids = (*attribute_token_ids(config, tokenizer), attribute_group_ids(config, tokenizer))
    pixels = {split: _pixel_values(pixel_processor, data.images) for split, data in splits.items()}
    keys = {"fingerprint": experiment_fingerprint(config), "evaluation_key": evaluation_key(config.data)}
    return Experiment(config, out_dir, splits, tokenizer, tokens, pixels, word_ids, **keys)


def _warn_epochs(config: ComparisonConfig, train: Split) -> None:
    epochs = config.training.steps * config.training.batch_size / len(train.conversations)
    if epochs > MAX_EPOCHS:
        print(
            f"warning: training.steps x batch_size is {epochs:.1f} epochs of the {len(train.conversations)} "
            f"training samples (> {MAX_EPOCHS}): the last val loss may measure over-fitting; compare "
            "best_val_loss and best_step in results.jsonl",
            file=sys.stderr,
        )


def _pixel_values(processor, images: np.ndarray, chunk: int = 64):
    """(N, 3, S, S) float32 pixels of ``images``, ``chunk`` at a time."""
    import torch

    return torch.cat(
        [processor.pixel_values(list(images[i : i + chunk])) for i in range(0, len(images), chunk)]
    )


# ------------------------------------------------------------------------------------- 3. label maps


@dataclass
class Job:
    """One (tokenizer, budget) of the grid, its label maps made: their digest (equal digests, equal runs), mean
    token counts and the first val maps (for ``tokens_examples.png``)."""

    name: str
    budget: int
    tokenizer_key: str  # digest of the tokenizer's settings: a run is redone when they change
    maps_digest: str
    mean_tokens: float
    val_mean_tokens: float
    examples: np.ndarray  # (EXAMPLES_SHOWN, h, w)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.budget}"

    @classmethod
    def of_maps(cls, name: str, budget: int, tokenizer_key: str, maps: dict[str, np.ndarray]) -> Job:
        """The job whose label maps (split -> (N, h, w)) are ``maps``."""
        digest = hashlib.blake2b(digest_size=16)
        for split in ("train", "val"):
            digest.update(repr(maps[split].shape).encode() + maps[split].tobytes())
        return cls(
            name=name,
            budget=budget,
            tokenizer_key=tokenizer_key,
            maps_digest=digest.hexdigest(),
            mean_tokens=round(float(token_counts(maps["train"]).mean()), 3),
            val_mean_tokens=round(float(token_counts(maps["val"]).mean()), 3),
            examples=maps["val"][:EXAMPLES_SHOWN],
        )


def _run_order(config: ComparisonConfig) -> list[str]:
    """Tokenizers others match come first."""
    return sorted(config.tokenizers, key=lambda name: config.tokenizers[name].get("match") is not None)


def label_maps(
    experiment: Experiment, name: str, budget: int, segmenter: Any = None
) -> dict[str, np.ndarray]:
    """Split -> (N, h, w) int16 label maps of tokenizer ``name`` at ``budget`` (a matched baseline at exactly
    the counts of the tokenizer it matches, a matched mask tokenizer at most), from ``segmentations/`` when made
    before."""
    config, folder = experiment.config, experiment.out_dir / "segmentations"
    match = config.tokenizers[name].get("match")
    maps = {}
    for split, data in experiment.splits.items():
        counts = None
        if match:
            matched = segment_split(config, match, budget, split, data, folder, segmenter=segmenter)
            counts = token_counts(matched)
        maps[split] = segment_split(config, name, budget, split, data, folder, counts, segmenter)
    return maps


def segment_jobs(experiment: Experiment) -> list[Job]:
    """Every (tokenizer, budget) with its label maps made (one line each), in run order, through one
    :func:`shared_segmenter`."""
    config = experiment.config
    segmenter = shared_segmenter(experiment)
    jobs = []
    for name in _run_order(config):
        for budget in budgets_of(config, name):
            started = time.perf_counter()
            maps = label_maps(experiment, name, budget, segmenter)
            jobs.append(Job.of_maps(name, budget, settings_digest(config.tokenizers[name]), maps))
            seconds = time.perf_counter() - started
            _log(
                f"label maps {jobs[-1].label}: {jobs[-1].mean_tokens:.1f} tokens/image ({_duration(seconds)})"
                + _matched_note(experiment, name, budget, maps)
            )
    segmenter.clear_cache()
    return jobs


def _matched_note(experiment: Experiment, name: str, budget: int, maps: dict[str, np.ndarray]) -> str:
    """For a tokenizer matched to another: how many images got fewer tokens than the one it matches (a
    baseline: none; a mask tokenizer's masks merge, never split, so it may give fewer); else ``""``."""
    match = experiment.config.tokenizers[name].get("match")
    if not match:
        return ""
    matched = label_maps(experiment, match, budget)  # made before (run order): read from segmentations/
    fewer = sum(int((token_counts(maps[s]) < token_counts(matched[s])).sum()) for s in maps)
    total = sum(len(maps[s]) for s in maps)
    return f"; matched to {match}: {fewer} of {total} images got fewer tokens than it"


def shared_segmenter(experiment: Experiment):
    """A ``Segmenter`` whose caches (``with_settings`` shares them) hold the boundary maps of every image of the
    experiment for each of its boundary models (keyed by model, output options and label size), so that the
    budgets and EPOC settings of one model cost EPOC only."""
    from ...segmentation.registry import BOUNDARY
    from ...segmentation.segmenter import Segmenter
    from ...segmentation.settings import SegmentationSettings, output_options

    models = set()
    for name in experiment.config.tokenizers:
        settings = tokenizer_settings(experiment.config, name, 1)
        if settings.kind == BOUNDARY:
            models.add(
                (settings.boundary_model, repr(sorted(output_options(settings.model_options).items())))
            )
    images = sum(len(split.images) for split in experiment.splits.values())
    return Segmenter(SegmentationSettings(), cache_size=images * max(len(models), 1) + 1)


# ----------------------------------------------------------------------------------------- 4. the plan


@dataclass
class Run:
    """One (tokenizer, budget, seed) and what it needs: ``train``; ``evaluate`` (its saved weights again, under
    other evaluation settings; ``previous``: the record whose training it keeps); ``share`` (``source`` has the
    same label maps: its result is this run's); or ``done``."""

    job: Job
    seed: int
    action: str
    source: Job | None = None
    previous: dict | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return self.job.name, self.job.budget, self.seed


def weights_path(experiment: Experiment, job: Job, seed: int) -> Path:
    """Where a run's final weights are saved: named by tokenizer, budget, seed and the experiment's and
    tokenizer's keys, so other data, model, training or tokenizer settings never read them."""
    key = settings_digest(experiment.fingerprint, job.tokenizer_key)
    return experiment.out_dir / "weights" / f"{job.name}-{job.budget}-seed{seed}-{key}.pt"


def finished_runs(experiment: Experiment, jobs: list[Job], evaluated: bool = True) -> dict[tuple, dict]:
    """(tokenizer, budget, seed) -> the last record of each run of this experiment in ``results.jsonl`` with the
    jobs' tokenizer settings and, when ``evaluated``, the current evaluation settings."""
    keys = {job.name: job.tokenizer_key for job in jobs}
    evaluation = experiment.evaluation_key if evaluated else None
    runs = experiment_runs(read_results(experiment.results_path), experiment.fingerprint, keys, evaluation)
    return {(r["tokenizer"], r["budget"], r["seed"]): r for r in runs}


def plan_runs(experiment: Experiment, jobs: list[Job]) -> list[Run]:
    """What each (tokenizer, budget, seed) needs, from ``results.jsonl`` and the saved weights."""
    done, trained = finished_runs(experiment, jobs), finished_runs(experiment, jobs, evaluated=False)
    first_with_maps: dict[str, Job] = {}
    runs = []
    for job in jobs:
        source = first_with_maps.setdefault(job.maps_digest, job)
        for seed in experiment.config.seeds:
            run = Run(job, seed, "train")
            if run.key in done:
                run.action = "done"
            elif source is not job:
                run.action, run.source = "share", source
            elif run.key in trained and weights_path(experiment, job, seed).is_file():
                run.action, run.previous = "evaluate", trained[run.key]
            runs.append(run)
    return runs


# ----------------------------------------------------------------------------------------- 5. the grid


class Progress:
    """The grid's progress: one line per run with runs done / to do, the time elapsed and the ETA (the mean
    time of the runs of each kind so far, for those left; shared runs cost nothing)."""

    def __init__(self, runs: list[Run]) -> None:
        self.left = Counter(run.action for run in runs)
        self.total, self.done = len(runs), 0
        self.seconds: dict[str, list[float]] = {}
        self.started = time.perf_counter()

    def eta(self) -> float:
        measured = {action: float(np.mean(times)) for action, times in self.seconds.items()}
        fallback = measured.get("train", max(measured.values(), default=0.0))
        return sum(n * measured.get(action, fallback) for action, n in self.left.items() if action != "share")

    def report(self, run: Run, record: dict, seconds: float) -> None:
        self.done += 1
        self.left[run.action] -= 1
        self.seconds.setdefault(run.action, []).append(seconds)
        how = {
            "train": f"trained in {_duration(seconds)}",
            "evaluate": f"evaluated from its saved weights in {_duration(seconds)}",
            "share": f"label maps identical to {run.source.label if run.source else ''}: its result",
        }[run.action]
        _log(
            f"[{self.done}/{self.total}] {run.job.label} seed {run.seed}: {how}; "
            f"{record['mean_tokens']:.1f} tokens/image, val loss {_number(record['val_loss'], 4)} (best "
            f"{_number(metric_value(record, 'best_val_loss'), 4)} at step {metric_value(record, 'best_step')}), "
            "attribute accuracy "
            f"{_number(record['attribute_accuracy'])}, QA accuracy {_number(record['accuracy'])}, "
            f"{record['step_seconds'] * 1000:.1f} ms/step; {_duration(time.perf_counter() - self.started)} "
            f"elapsed, ETA {_duration(self.eta())}"
        )


def run_grid(experiment: Experiment, jobs: list[Job], runs: list[Run]) -> None:
    """Every run of ``runs`` not done, job by job, each appended to ``results.jsonl`` as it finishes."""
    todo = [run for run in runs if run.action != "done"]
    counts = Counter(run.action for run in runs)
    _log(
        f"{len(runs)} runs: {counts['train']} to train, {counts['evaluate']} to evaluate from saved weights "
        f"(only evaluation settings changed), {counts['share']} sharing the label maps of another, "
        f"{counts['done']} done before"
    )
    results = finished_runs(experiment, jobs)
    progress = Progress(todo)
    for job in jobs:
        data = None  # label maps loaded once per job
        for run in [run for run in todo if run.job is job]:
            started = time.perf_counter()
            if run.action == "share":
                record = _shared_record(run, results[run.source.name, run.source.budget, run.seed])
            else:
                data = data or {
                    split: experiment.run_data(split, maps)
                    for split, maps in label_maps(experiment, job.name, job.budget).items()
                }
                record = _trained_record(experiment, run, data)
            append_result(experiment.results_path, record)
            results[run.key] = record
            progress.report(run, record, time.perf_counter() - started)


def _trained_record(experiment: Experiment, run: Run, data: dict[str, RunData]) -> dict:
    """The ``results.jsonl`` record of a run trained now, or evaluated again from its saved weights."""
    config, job = experiment.config, run.job
    path = weights_path(experiment, job, run.seed)
    started = time.perf_counter()
    if run.action == "train":
        desc, weights = f"{job.label} seed {run.seed}", path if config.save_weights else None
        result = train_run(config, experiment.tokenizer, data["train"], data["val"], run.seed, desc, weights)
        result["wall_seconds"] = round(time.perf_counter() - started, 2)  # training + evaluations
    else:
        metrics = evaluate_saved(config, experiment.tokenizer, data["train"], data["val"], run.seed, path)
        result = {**metrics, **{key: run.previous.get(key) for key in TRAINING_FIELDS}}
        result["evaluation_seconds"] = round(time.perf_counter() - started, 2)
    return {
        "tokenizer": job.name,
        "budget": job.budget,
        "seed": run.seed,
        "mean_tokens": job.mean_tokens,
        "val_mean_tokens": job.val_mean_tokens,
        "steps": config.training.steps,
        "batch_size": config.training.batch_size,
        **result,
        "fingerprint": experiment.fingerprint,
        "tokenizer_key": job.tokenizer_key,
        "evaluation_key": experiment.evaluation_key,
    }


def _shared_record(run: Run, source: dict) -> dict:
    """The source run's record as this run's: same label maps, so the same training and metrics."""
    return {
        **source,
        "tokenizer": run.job.name,
        "budget": run.job.budget,
        "tokenizer_key": run.job.tokenizer_key,
        "same_as": run.source.label,
    }


# --------------------------------------------------------------------------------------- 6. the report


def write_report(
    config: str | os.PathLike | dict | ComparisonConfig, base_dir: str | os.PathLike | None = None
) -> Path:
    """``results.md`` and the figures of the experiment ``config`` describes, from every run of it in its
    ``output_dir``'s ``results.jsonl`` (any number of invocations or machines; nothing is trained or
    segmented): the command's ``--report-only``. Paired comparisons are against ``reference_tokenizer``.
    Returns the output folder; ``ConfigError`` when ``results.jsonl`` holds no run of this experiment."""
    from .plots import plot_token_efficiency

    if not isinstance(config, ComparisonConfig):
        config = load_config(config, base_dir)
    out_dir = Path(config.output_dir)
    keys = {name: settings_digest(spec) for name, spec in config.tokenizers.items()}
    records = read_results(out_dir / "results.jsonl")
    runs = experiment_runs(records, experiment_fingerprint(config), keys, evaluation_key(config.data))
    if not runs:
        raise ConfigError(
            f"output_dir: {str(out_dir / 'results.jsonl')!r} holds no run of this experiment "
            f"({len(records)} records with other data, model, training or evaluation settings)"
        )
    write_text(out_dir / "results.md", results_markdown(runs, config.reference_tokenizer))
    plot_token_efficiency(runs, out_dir)
    return out_dir


def _plot_examples(experiment: Experiment, jobs: list[Job]) -> None:
    """``tokens_examples.png``: the first val images and what each (tokenizer, budget) makes of them."""
    import cv2

    from ..plots import plot_tokenizer_examples

    shown = min(EXAMPLES_SHOWN, len(experiment.splits["val"].images))
    size = (experiment.config.label_size,) * 2
    small = [
        cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        for image in experiment.splits["val"].images[:shown]
    ]
    examples = {f"{job.name} @ {job.budget}": job.examples[:shown] for job in jobs}
    plot_tokenizer_examples(np.stack(small), examples, experiment.out_dir / "tokens_examples.png")
