"""Start-up cost: what a user waits for before anything happens, against `import torch, transformers`.

    python benchmarks/bench_startup.py [--repeats 5]

Each case runs in a fresh interpreter (`python -c ...`), `--repeats` times; the median wall time is reported,
with its ratio to `import torch, transformers` measured in the same run (the floor of any HF model code).
Writes `benchmarks/results/startup.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "import torch, transformers": "import torch, transformers",
    "subobject-vlm --help": "import contextlib, io, subobject_vlm.cli as c\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): c.main(['--help'])",
    "subobject-vlm segment --help": "import contextlib, io, subobject_vlm.cli as c\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): c.main(['segment', '--help'])",
    "import subobject_vlm": "import subobject_vlm",
    "from subobject_vlm import epoc": "from subobject_vlm import epoc",
    "import subobject_vlm + transformers (Auto registration)": "import subobject_vlm, transformers",
    "AutoConfig ready for subobject_llava": "import subobject_vlm\nfrom transformers import AutoConfig\n"
    "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\nCONFIG_MAPPING['subobject_llava']",
}


def time_case(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    args = parser.parse_args()
    time_case("pass", 2)  # warm the file cache
    seconds = {name: time_case(code, args.repeats) for name, code in CASES.items()}
    floor = seconds["import torch, transformers"]
    python = time_case("pass", args.repeats)
    rows = {
        name: {"seconds": round(s, 3), "ratio_to_torch_transformers": round(s / floor, 3)}
        for name, s in seconds.items()
    }
    result = {"repeats": args.repeats, "bare_python_seconds": round(python, 3), "cases": rows}
    width = max(map(len, rows))
    print(f"{'case':{width}}  seconds  x import torch, transformers   (bare python: {python:.3f} s)")
    for name, row in rows.items():
        print(f"{name:{width}}  {row['seconds']:7.3f}  {row['ratio_to_torch_transformers']:.2f}")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
