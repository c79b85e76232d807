"""``subobject-vlm demo``: serve the demo page (a photo's subobject tokens next to every registered label-map
tokenizer: patches, SLIC, Felzenszwalb, ..., and the mask tokenizers of ``--compare sam:CHECKPOINT``) on this
machine; needs the ``demo`` extra (``pip install -e ".[demo]"``)."""

from __future__ import annotations

import argparse
import sys

NAME = "demo"
HELP = "serve the demo web page (Gradio) on this machine"
DESCRIPTION = (
    "Serve the demo page: upload a photo and see its subobject tokens next to patches, SLIC, Felzenszwalb "
    "(every registered label-map tokenizer) at the same token count. Needs the demo extra: "
    'pip install -e ".[demo]". Works offline with the embedded model.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..segmentation.registry import LABEL_MAP, describe_names, family_names
    from ._options import add_named_option_argument

    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument(
        "--model",
        default="default",
        help=f"boundary model selected at start: {describe_names(baselines=False)}",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device of the boundary model (and of --compare's mask models): cpu, cuda, cuda:N, mps",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="TOKENIZER",
        help="add a mask tokenizer to the comparison row, shown at (at most) our token count; repeatable: "
        f"{', '.join(family_names(LABEL_MAP))} (a local folder or a hub id, e.g. sam:facebook/sam-vit-base)",
    )
    add_named_option_argument(
        parser, "--compare-option", of="--compare", note=" (SAM's 32 a side take minutes an image on a CPU)"
    )


def run(args: argparse.Namespace) -> int:
    from ..demo.pipeline import check_boundary_model_name, check_comparison_name
    from ._options import named_options

    check_boundary_model_name(args.model)  # a mistyped name or a label-map tokenizer fails before serving
    compare = [check_comparison_name(name) for name in args.compare]  # so does a --compare boundary model
    compare_options = named_options(args.compare_option, "--compare-option", compare)
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    try:
        from ..demo.page import build_demo, launch
    except ImportError as error:
        raise ValueError(
            f'the demo needs gradio ({error}); install it with: pip install -e ".[demo]"'
        ) from None
    from ..demo.pipeline import comparison_options
    from ..segmentation.api import load_tokenizer
    from ._files import quiet_third_parties

    quiet_third_parties()
    for name in compare:  # loaded now, as the page will (cached): a broken checkpoint or option fails here
        load_tokenizer(name, **comparison_options(name, args.device, compare_options))
    print(f"serving the demo on http://{args.host}:{args.port} (Ctrl+C to stop)", file=sys.stderr)
    demo = build_demo(model=args.model, device=args.device, compare=compare, compare_options=compare_options)
    launch(demo, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":  # python -m subobject_vlm.commands.demo ...
    from . import run_as_script

    raise SystemExit(run_as_script("demo"))
