"""Tokenizer throughput: images per second of the whole tokenizer (JPEG decode -> boundary map -> EPOC -> label
map) against SLIC and Felzenszwalb, measured in the same run, interleaved, as ratios.

Two paths:
- ``processor``: ``SubobjectImageProcessor(boundary_model=NAME, max_tokens=64, cache_size=0)`` called on batches
  of decoded images (label maps 336², the CLIP pixels included, as a training pipeline would call it); the
  baselines get the same label size and budget (exactly 64 regions, made at label size).
- ``direct``: ``segment_image`` at each image's own size; SLIC and Felzenszwalb get exactly our per-image token
  count (computed once, untimed).

Images: BSDS500 val photos (481x321; ``--root`` or ``$BSDS500_ROOT`` or ``../shared/data/BSDS500``), else
scikit-image's photos resized to 481x321; and the same photos resized to 1024² and 2048², all JPEG-encoded in
memory so decoding is timed. Each configuration (path, size, batch size, torch/OpenCV threads) times every
tokenizer ``--repeats`` times in rotating order on the same images; the ratio ours / SLIC is taken per repeat
and the median reported. Peak memory comes from one child process per (size, tokenizer): the growth of its
resident set's high-water mark (``ru_maxrss``) over its size after loading, and the peak of numpy/PIL
allocations (tracemalloc), at batch sizes 1 and 8 through the processor.

    python benchmarks/bench_throughput.py          # ~20 min on 2 cores; writes benchmarks/results/throughput.json
    python benchmarks/bench_throughput.py --quick  # a one-minute smoke run (does not overwrite the results)
    python benchmarks/bench_throughput.py --fast-vs-reference   # EdgeNet's fast path against the pure-PyTorch
                                     # reference on the val photos: time (1 thread, interleaved) and equal outputs
"""

from __future__ import annotations

import os

# libgomp threads sleep at barriers instead of spinning: on a machine shared with other jobs, torch's 2-thread runs
# otherwise collapse ~10x whenever one of its threads is descheduled (measured here, see the README); must be set
# before torch loads OpenMP. Run with OMP_WAIT_POLICY=ACTIVE to measure the spinning default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the package of this checkout, also in child processes

from subobject_vlm import SubobjectImageProcessor  # noqa: E402
from subobject_vlm.segmentation import SegmentationSettings, load_boundary_model, segment_image  # noqa: E402

TOKENIZERS = ("default", "slic", "felzenszwalb")
BSDS_SIZE = (321, 481)  # (H, W) of a landscape BSDS500 photo
BUDGET = 64


# ------------------------------------------------------------------------------------------------ images


def bsds_photos(root: str | None, count: int) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` RGB photos: BSDS500 val if present, else scikit-image's photos at 481x321."""
    candidates = [root, os.environ.get("BSDS500_ROOT"), REPO.parent / "shared" / "data" / "BSDS500"]
    for candidate in [Path(c) for c in candidates if c]:
        folder = candidate / "images" / "val"
        files = sorted(folder.glob("*.jpg"))[:count] if folder.is_dir() else []
        if files:
            return [np.asarray(Image.open(f).convert("RGB")) for f in files], f"BSDS500 val ({folder})"
    from skimage import data

    names = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "immunohistochemistry", "retina")
    photos = []
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 3 and image.shape[2] == 3:
            photos.append(cv2.resize(image, BSDS_SIZE[::-1], interpolation=cv2.INTER_AREA))
    return [photos[i % len(photos)] for i in range(count)], "scikit-image photos resized to 481x321"


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """JPEG bytes -> ``(H, W, 3)`` uint8 RGB (the decode step of the timed pipeline)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def workloads(photos: list[np.ndarray], sizes: list[str]) -> dict[str, list[bytes]]:
    """JPEG-encoded images per size name: ``bsds`` (as they are), ``1024``, ``2048`` (square resizes)."""
    out = {}
    for size in sizes:
        if size == "bsds":
            out[size] = [jpeg(p) for p in photos]
        else:
            side = int(size)
            out[size] = [jpeg(cv2.resize(p, (side, side), interpolation=cv2.INTER_CUBIC)) for p in photos]
    return out


# --------------------------------------------------------------------------------------------- pipelines


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


_PROCESSORS: dict[str, SubobjectImageProcessor] = {}


def run_processor(tokenizer: str, batch: list[bytes]) -> int:
    """Decode and tokenize one batch through the processor; returns the number of tokens made."""
    if tokenizer not in _PROCESSORS:
        _PROCESSORS[tokenizer] = SubobjectImageProcessor(
            boundary_model=tokenizer, max_tokens=BUDGET, cache_size=0
        )
    output = _PROCESSORS[tokenizer]([decode(data) for data in batch], return_tensors="pt")
    return int(output["num_tokens"].sum())


def run_direct(tokenizer: str, batch: list[bytes], counts: list[int] | None = None) -> list[int]:
    """Decode and tokenize one batch at the images' own sizes; baselines at exactly ``counts`` tokens."""
    images = [decode(data) for data in batch]
    if tokenizer in ("slic", "felzenszwalb"):
        maps = [
            segment_image(image, SegmentationSettings(tokenizer, max_tokens=count))
            for image, count in zip(images, counts)
        ]
    else:
        settings = SegmentationSettings(tokenizer, max_tokens=BUDGET)
        probs = load_boundary_model(tokenizer).predict(images)  # one batched call
        maps = [segment_image(None, settings, boundary_probs=p) for p in probs]
    return [int(m.max()) + 1 for m in maps]


def time_config(
    path: str, tokenizers: list[str], images: list[bytes], batch_size: int, repeats: int, counts: dict
) -> dict:
    """Images/s of each tokenizer (median over repeats, order rotated each repeat) and the ratios to SLIC."""
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    seconds: dict[str, list[float]] = {name: [] for name in tokenizers}
    if path == "processor" and batch_size <= 8:  # untimed: first calls at new batch shapes allocate
        for name in tokenizers:
            run_processor(name, batches[0])
    for repeat in range(repeats):
        order = tokenizers[repeat % len(tokenizers) :] + tokenizers[: repeat % len(tokenizers)]
        for name in order:
            start = time.perf_counter()
            for index, batch in enumerate(batches):
                if path == "processor":
                    run_processor(name, batch)
                else:
                    first = index * batch_size
                    run_direct(name, batch, counts.get("ours", [])[first : first + len(batch)])
            seconds[name].append(time.perf_counter() - start)
    result = {
        "images": len(images),
        "images_per_s": {n: len(images) / statistics.median(s) for n, s in seconds.items()},
        "seconds": seconds,
    }
    if "slic" in tokenizers:  # paired per repeat: both ran seconds apart on the same images
        result["ratio_to_slic"] = {
            n: statistics.median(slic / ours for slic, ours in zip(seconds["slic"], s))
            for n, s in seconds.items()
            if n != "slic"
        }
    return result


# ------------------------------------------------------------------------------------------------ memory


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) of this process, MB. (``ru_maxrss`` would not
    do: Linux carries the parent's high-water mark into a forked and exec'd child.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def _reset_high_water() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS (Linux >= 4.0)


def memory_child(tokenizer: str, size: str, root: str | None, batch_sizes: list[int]) -> dict:
    """In a fresh process: load, warm up on a tiny image, then run each batch size once through the processor
    and read the growth of the resident high-water mark (reset before each) and the numpy/PIL peak."""
    set_threads(2)
    photos, _ = bsds_photos(root, max(batch_sizes))
    images = workloads(photos, [size])[size]
    run_processor(tokenizer, [jpeg(np.full((48, 64, 3), 128, np.uint8))])  # loads the model, warms up
    results = {}
    for batch_size in sorted(batch_sizes):
        _reset_high_water()
        before = _status_mb("VmRSS")
        tracemalloc.start()
        run_processor(tokenizer, images[:batch_size])
        _, numpy_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        high_water = _status_mb("VmHWM")
        results[str(batch_size)] = {
            "rss_before_mb": before,
            "rss_high_water_mb": high_water,
            "rss_growth_mb": max(0.0, high_water - before),
            "numpy_pil_peak_mb": numpy_peak / 2**20,
        }
    return results


def measure_memory(tokenizers, sizes, root, batch_sizes) -> dict:
    out: dict = {}
    jobs = [(size, name) for size in sizes for name in tokenizers]
    for size, name in tqdm(jobs, desc="memory (child processes)", file=sys.stderr):
        command = [sys.executable, __file__, "--memory-child", name, size, "--batch-sizes"]
        command += [str(b) for b in batch_sizes] + (["--root", root] if root else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out.setdefault(size, {})[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------------------------------------ report


SIZE_LABEL = {"bsds": "481x321 (BSDS)", "1024": "1024²", "2048": "2048²"}
SHORT = {"default": "ours", "slic": "SLIC", "felzenszwalb": "Felz."}


def markdown(report: dict) -> str:
    lines = [
        "| path | size | batch | threads | ours img/s | SLIC img/s | Felz. img/s | ours / SLIC | Felz. / SLIC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["timings"]:
        speed, ratio = row["images_per_s"], row.get("ratio_to_slic", {})
        cells = [f"{speed[n]:.2f}" if n in speed else "–" for n in TOKENIZERS]
        ratios = [f"{ratio[n]:.2f}" if n in ratio else "–" for n in ("default", "felzenszwalb")]
        ours_ratio = f"**{ratios[0]}**" if row["path"] == "processor" and row["size"] == "bsds" else ratios[0]
        lines.append(
            f"| {row['path']} | {SIZE_LABEL[row['size']]} | {row['batch_size']} | {row['threads']} | "
            + " | ".join(cells)
            + f" | {ours_ratio} | {ratios[1]} |"
        )
    if report.get("memory"):
        lines += [
            "",
            "Peak memory through the processor (child process per size and tokenizer; resident high-water growth "
            "over the loaded process / numpy+PIL peak, MB):",
            "",
            "| size | batch | ours | SLIC | Felz. |",
            "|---|---|---|---|---|",
        ]
        for size, per_name in report["memory"].items():
            batches = sorted({b for entry in per_name.values() for b in entry}, key=int)
            for batch in batches:
                cells = []
                for name in TOKENIZERS:
                    entry = per_name.get(name, {}).get(batch)
                    cells.append(
                        f"{entry['rss_growth_mb']:.0f} / {entry['numpy_pil_peak_mb']:.0f}" if entry else "–"
                    )
                lines.append(f"| {SIZE_LABEL[size]} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fast_vs_reference(root: str | None, out: Path) -> dict:
    """Every val photo through the default model on the fast path and on the pure-PyTorch reference
    (``edgenet.USE_FAST_PATH = False``), in alternating order, 1 thread: seconds, boundary-map differences and
    label-map agreement at 64 tokens (``partition_agreement`` as in ``tests/test_pinned_label_maps.py``)."""
    from subobject_vlm.segmentation import edgenet

    sys.path.insert(0, str(REPO / "tests"))
    from test_pinned_label_maps import partition_agreement

    set_threads(1)
    photos, source = bsds_photos(root, 100)
    model, settings = load_boundary_model("default"), SegmentationSettings("default", max_tokens=BUDGET)
    model.predict(photos[:2])  # warm-up
    seconds: dict[str, list[float]] = {"fast": [], "reference": []}
    max_difference, identical, agreements, token_differences = 0.0, 0, [], []
    for i, image in enumerate(tqdm(photos, desc="fast vs reference", file=sys.stderr)):
        probs = {}
        for fast in (True, False) if i % 2 == 0 else (False, True):
            edgenet.USE_FAST_PATH = fast
            start = time.perf_counter()
            [probs[fast]] = model.predict([image])
            seconds["fast" if fast else "reference"].append(time.perf_counter() - start)
        edgenet.USE_FAST_PATH = True
        max_difference = max(max_difference, float(np.abs(probs[True] - probs[False]).max()))
        reference_map = segment_image(None, settings, boundary_probs=probs[False])
        fast_map = segment_image(None, settings, boundary_probs=probs[True])
        identical += int(np.array_equal(reference_map, fast_map))
        agreements.append(
            min(partition_agreement(reference_map, fast_map), partition_agreement(fast_map, reference_map))
        )
        token_differences.append(int(fast_map.max()) - int(reference_map.max()))
    report = {
        "images": f"{len(photos)} x {source}",
        "median_seconds": {name: statistics.median(values) for name, values in seconds.items()},
        "speedup_median_of_pairs": statistics.median(
            r / f for r, f in zip(seconds["reference"], seconds["fast"])
        ),
        "max_abs_boundary_prob_difference": max_difference,
        "label_maps_identical": identical,
        "label_map_agreement_min": min(agreements),
        "token_count_differences": {
            str(d): token_differences.count(d) for d in sorted(set(token_differences))
        },
        "load_average": os.getloadavg(),
    }
    out.write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=None, help="BSDS500 folder (default: $BSDS500_ROOT or ../shared/data)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per configuration (1 at 2048²)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sizes", nargs="+", default=["bsds", "1024", "2048"])
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory children")
    parser.add_argument("--quick", action="store_true", help="smoke run: BSDS size, batch 1 and 8, 1 repeat")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "throughput.json"))
    parser.add_argument(
        "--fast-vs-reference", action="store_true", help="EdgeNet fast path vs reference only"
    )
    parser.add_argument("--memory-only", action="store_true", help="rerun the memory children into --out")
    parser.add_argument("--memory-child", nargs=2, metavar=("TOKENIZER", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child, args.root, args.batch_sizes)))
        return
    if args.fast_vs_reference:
        out = Path(args.out).with_name("fast_path.json")
        print(json.dumps(fast_vs_reference(args.root, out), indent=2))
        print(f"wrote {out}")
        return
    if args.memory_only:  # refresh the memory figures of an existing report
        out = Path(args.out)
        report = json.loads(out.read_text())
        report["memory"] = measure_memory(list(TOKENIZERS), args.sizes, args.root, [1, 8])
        out.write_text(json.dumps(report, indent=2))
        out.with_suffix(".md").write_text(markdown(report))
        print(markdown(report))
        return
    if args.quick:
        args.sizes, args.batch_sizes, args.repeats, args.threads = ["bsds"], [1, 8], 1, [2]
        if args.out == parser.get_default("out"):
            args.out = str(Path(args.out).with_name("throughput_quick.json"))

    photos, source = bsds_photos(args.root, max(args.batch_sizes))
    images = workloads(photos, args.sizes)
    configs = []
    for size in args.sizes:
        repeats = 1 if size == "2048" else args.repeats
        for threads in args.threads:
            for batch_size in args.batch_sizes:
                count = max(batch_size, 8)  # batch 1 still times 8 images
                configs.append(("processor", size, batch_size, threads, count, repeats, list(TOKENIZERS)))
        # at the images' own sizes the baselines get slow (Felzenszwalb: ~18 s at 1024², ~160 s at 2048² here)
        direct = {
            "bsds": (8, list(TOKENIZERS)),
            "1024": (2, list(TOKENIZERS)),
            "2048": (1, ["default", "slic"]),
        }
        count, names = direct[size]
        for threads in args.threads if size == "bsds" else args.threads[-1:]:
            configs.append(("direct", size, 1, threads, count, 1 if size != "bsds" else repeats, names))

    # warm up every tokenizer at every size (model load, first-call allocations), untimed
    set_threads(max(args.threads))
    for size in args.sizes:
        for name in TOKENIZERS:
            run_processor(name, images[size][:1])
    counts = {  # our per-image token counts at the images' own sizes: the baselines' exact targets (direct path)
        size: run_direct(
            "default", images[size][: max(c[4] for c in configs if c[0] == "direct" and c[1] == size)]
        )
        for size in args.sizes
    }

    timings = []
    for path, size, batch_size, threads, count, repeats, names in tqdm(
        configs, desc="timing", file=sys.stderr
    ):
        set_threads(threads)
        row = time_config(path, names, images[size][:count], batch_size, repeats, {"ours": counts[size]})
        row.update(path=path, size=size, batch_size=batch_size, threads=threads, repeats=repeats)
        timings.append(row)
        ratio = row.get("ratio_to_slic", {}).get("default", float("nan"))
        tqdm.write(
            f"{path:9} {size:>5} batch {batch_size:>2} threads {threads}: ours/SLIC {ratio:.2f}", sys.stderr
        )

    report = {
        "images": source,
        "budget": BUDGET,
        "label_size": [336, 336],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "opencv": cv2.__version__,
        },
        "tokens_direct": {size: {"mean": float(np.mean(c)), "per_image": c} for size, c in counts.items()},
        "timings": timings,
    }
    if args.memory:
        report["memory"] = measure_memory(list(TOKENIZERS), args.sizes, args.root, [1, 8])
    report["machine"]["load_average_end"] = os.getloadavg()
    table = markdown(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
