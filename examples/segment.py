"""Segment a photo into subobjects and look at the tokens (runs offline in a few seconds).

python examples/segment.py [IMAGE] [--max-tokens 64] [--out runs/example]
"""

import argparse
from pathlib import Path

import numpy as np

from subobject_vlm import epoc
from subobject_vlm.image_utils import load_image
from subobject_vlm.segmentation import load_boundary_model, segment
from subobject_vlm.segmentation.visualize import save_composite

parser = argparse.ArgumentParser()
parser.add_argument("image", nargs="?", default=str(Path(__file__).parent / "images" / "coffee.jpg"))
parser.add_argument("--max-tokens", type=int, default=64)
parser.add_argument("--out", default="runs/example")
args = parser.parse_args()

image = load_image(args.image)  # (H, W, 3) uint8, EXIF-rotated
model = load_boundary_model("default")  # the embedded boundary model; or a DirectSAM hub id / folder
[boundary_probs] = model.predict([image])  # (H, W) float32 in [0, 1]
label_map = epoc(boundary_probs, threshold=0.1, max_tokens=args.max_tokens)  # (H, W) int32, ids 0..n-1

areas = np.bincount(label_map.ravel())
print(
    f"{len(areas)} tokens; largest covers {areas[0] / label_map.size:.1%} of the image, smallest {areas[-1]} px"
)

# the same budget with the Felzenszwalb baseline, for comparison
baseline = segment(image, "felzenszwalb", max_tokens=len(areas))

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
save_composite(out / "subobjects.png", image, label_map, boundary_probs)
save_composite(out / "felzenszwalb.png", image, baseline)
print(f"wrote {out / 'subobjects.png'} and {out / 'felzenszwalb.png'}")
