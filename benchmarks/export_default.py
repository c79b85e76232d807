"""Export a trained boundary run as the package's embedded default (``subobject_vlm/weights/default``).

EPOC's default threshold is 0.1 (what DirectSAM maps are cut at). A model trained with a class-balanced loss
is calibrated differently, so its operating point tuned on val (``benchmarks/tune_operating_point.py``) may be
another threshold ``t``. The export shifts the model's final bias by ``logit(0.1) - logit(t)``: the same
pixels then fall below 0.1 as fell below ``t`` before, so the processor and the CLI need no model-specific
threshold. The boundary benchmark (ODS / OIS / AP) does not change under this monotone shift.

    python benchmarks/export_default.py runs/boundary_bsds_edgenet --tuned-threshold 0.02
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import torch

from subobject_vlm.segmentation import DEFAULT_WEIGHTS_DIR, EdgeNetForBoundaryDetection

EPOC_DEFAULT_THRESHOLD = 0.1
MAX_BYTES = 20 * 2**20


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="output folder of `subobject-vlm train-boundary` (an EdgeNet)")
    parser.add_argument("--tuned-threshold", type=float, default=EPOC_DEFAULT_THRESHOLD)
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS_DIR))
    args = parser.parse_args()

    if not 0 < args.tuned_threshold < 1:
        raise SystemExit(f"--tuned-threshold must be in (0, 1), got {args.tuned_threshold}")
    model = EdgeNetForBoundaryDetection.from_pretrained(args.run, use_safetensors=True)
    offset = logit(EPOC_DEFAULT_THRESHOLD) - logit(args.tuned_threshold)
    with torch.no_grad():
        model.fuse.bias += offset
    model.config.id2label, model.config.label2id = {0: "boundary"}, {"boundary": 0}
    model.config.calibration = {
        "tuned_threshold": args.tuned_threshold,
        "logit_offset": round(offset, 6),
        "note": "fuse bias shifted so that EPOC's default threshold 0.1 equals the threshold tuned on val",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    preprocessor = Path(args.run) / "preprocessor_config.json"
    if preprocessor.exists():
        shutil.copy(preprocessor, out / "preprocessor_config.json")
    (out / "model.safetensors").chmod(0o644)
    size = (out / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{out / 'model.safetensors'} is {size / 2**20:.1f} MB, over the 20 MB limit")
    print(f"wrote {out} (weights {size / 1024:.0f} KB, logit offset {offset:+.3f})")


if __name__ == "__main__":
    main()
