"""``subobject-vlm precompute-merge DIR``: check the shards of a sharded precompute run and index them."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "precompute-merge"
HELP = "check that every shard of a precompute output is there (every image once, same settings) and index it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "out", help="the --out folder of subobject-vlm precompute (every rank's shards in it)"
    )


def run(args: argparse.Namespace) -> int:
    from ..data.precompute import merge_precomputed

    index = merge_precomputed(args.out)
    print(
        f"merged {len(index['shards'])} shard(s) in {args.out}: {index['num_rows']} label maps, "
        f"{index['num_failed']} failed image(s)",
        file=sys.stderr,
    )
    print(json.dumps({k: index[k] for k in ("num_images", "num_rows", "num_failed")}))
    return 0


if __name__ == "__main__":
    from . import run_as_script

    raise SystemExit(run_as_script("precompute_merge"))
