"""The demo's web page (Gradio): a photo in, its subobject tokens next to patches, SLIC and Felzenszwalb out.

``build_demo()`` returns the ``gr.Blocks``; ``subobject-vlm demo`` and the repository's ``app.py`` (a Hugging
Face Space) launch it with ``LAUNCH_OPTIONS``. The work is done by ``pipeline``'s plain functions; this module
only wires them to components. Nothing here phones home: Gradio's analytics are off, the theme's fonts are
served by the app itself, and no model is downloaded unless a hub id is typed into the model box.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from ..segmentation.registry import BOUNDARY, describe_names, registered_names  # noqa: E402
from ..segmentation.settings import (  # noqa: E402
    BASELINES,
    DEFAULT_MAX_TOKENS,
    DEFAULT_SEEDS,
    SEED_MODES,
    SegmentationSettings,
)
from ..segmentation.visualize import mean_colour_image, region_overlay  # noqa: E402
from .pipeline import (  # noqa: E402
    BoundaryMapCache,
    Tokenization,
    add_baselines,
    check_boundary_model_name,
    example_photos,
    highlight_region,
    pictures,
    prepare_image,
    read_ground_truth,
    region_at,
    tokenize,
    write_downloads,
)

LOGGER = logging.getLogger(__name__)
TITLES = {"ours": "ours", "patch": "patches", "slic": "SLIC", "felzenszwalb": "Felzenszwalb"}
LAUNCH_OPTIONS = {"show_error": True, "max_file_size": "64mb", "theme": gr.themes.Default()}
INTRO = """# Subobject-level image tokenization
Each region is one token of a vision-language model: cut along predicted boundaries (EPOC), no pixel dropped.
Upload a photo or pick an example; the row below tokenizes it with patches, SLIC and Felzenszwalb at
**the same token count**. Click a region to see its token. Moving the budget reruns only the cheap part: the
boundary map is cached.
"""


def _caption(result: Tokenization, name: str, what: str = "") -> str:
    """``"SLIC · 64 tokens · recall 0.71"``: the tokenizer, its count, and its recall where there is a ground
    truth."""
    caption = f"{TITLES[name]}{what} · {result.tokens[name]} tokens"
    if result.recall is not None:
        caption += f" · recall {result.recall[name]:.2f}"
    return caption


def _summary(result: Tokenization) -> str:
    """A Markdown table: tokens (and boundary recall) per tokenizer."""
    has_gt = result.recall is not None
    lines = [
        "| tokenizer | tokens |" + (" boundary recall (2 px) |" if has_gt else ""),
        "|---|---|" + ("---|" if has_gt else ""),
    ]
    for name, count in result.tokens.items():
        title = f"ours ({result.settings.boundary_model})" if name == "ours" else TITLES[name]
        lines.append(f"| {title} | {count} |" + (f" {result.recall[name]:.3f} |" if has_gt else ""))
    return "\n".join(lines)


def _status(result: Tokenization, file_name: str) -> str:
    height, width = result.image.shape[:2]
    settings = result.settings
    if result.model_seconds is None:
        model = f"boundary map of `{settings.boundary_model}` reused from the cache (model not rerun)"
    else:
        model = f"boundary model `{settings.boundary_model}` ran in {result.model_seconds:.2f} s"
    status = f"**{file_name}** · {width}×{height} px · {model}"
    count = result.tokens["ours"]
    if count < settings.max_tokens:
        status += (
            f" · {count} tokens under a budget of {settings.max_tokens}: with seeds = threshold the count adapts "
            "to the image (seeds = minima fills the budget)"
            if settings.seeds == "threshold"
            else f" · {count} tokens under a budget of {settings.max_tokens} (min area and the map's minima limit it)"
        )
    return status


def _blank(status: str, warn: bool = False) -> tuple:
    """Every output emptied (captions back to their titles) and ``status`` in the status box; with ``warn``
    also in a toast."""
    if warn:
        gr.Warning(status.removeprefix("⚠️ "))
    images = [gr.Image(None, label=title) for title in ("boundary map", *TITLES.values())]
    images.insert(2, gr.Image(None, label="ours: mean colour"))
    return (None, *images, "", status, None, "")


def build_demo(
    model: str = "default", device: str = "cpu", cache: BoundaryMapCache | None = None
) -> gr.Blocks:
    """The demo page.

    Args:
        model: the boundary model selected at start: a registered name, a local checkpoint folder or a hub id.
        device: torch device of the boundary model.
        cache: boundary maps kept between events (a new one by default; tests pass theirs to count model runs).
    """
    cache = cache if cache is not None else BoundaryMapCache()
    examples = [str(path) for path in example_photos()]
    model_names = registered_names(BOUNDARY)  # ours is a boundary model (families, 'sam:', are label-map)

    def update(photo, model_name, max_tokens, threshold, seeds, min_area, resolution, ground_truth, view):
        """Ours first (the boundary map cached: a new budget costs EPOC only), then the baselines at our count:
        a generator, so the page shows each step as soon as it is done."""
        if not photo:
            yield _blank("Upload a photo or pick an example.")
            return
        file_name = Path(photo).name
        try:
            image, original_shape, notes = prepare_image(photo)
            options = {"device": device}
            if resolution:
                options["resolution"] = int(resolution)
            settings = SegmentationSettings(
                check_boundary_model_name(model_name),
                options,
                threshold=float(threshold),
                max_tokens=int(max_tokens),
                min_area=int(min_area or 0),
                seeds=seeds,
            )
            gt_boundaries = None
            if ground_truth:
                try:
                    gt_boundaries = read_ground_truth(ground_truth, original_shape, image.shape[:2])
                except Exception as error:  # noqa: BLE001 - any unreadable ground truth: shown without recall
                    gr.Warning(f"ground truth ignored: {error}")
            result = tokenize(image, settings, cache, gt_boundaries, baselines=False)
            shown = pictures(result, view)
        except (ValueError, OSError) as error:  # bad input: say what, in the page, and keep serving
            yield _blank(f"⚠️ {error}", warn=True)
            return
        except Exception as error:  # noqa: BLE001 - a broken checkpoint or a bug: say so, keep serving
            LOGGER.exception("demo: %s failed", file_name)
            yield _blank(f"⚠️ {file_name}: {type(error).__name__}: {error}", warn=True)
            return
        for note in notes:
            gr.Warning(note)
        ours = (
            gr.Image(shown["boundary_map"], label=f"boundary map ({settings.boundary_model})"),
            gr.Image(shown["overlay"], label=_caption(result, "ours", " (click a region)")),
            gr.Image(shown["mean_colour"], label=_caption(result, "ours", ": mean colour")),
        )
        pending = [gr.Image(label=f"{TITLES[name]} · computing…") for name in BASELINES]
        status = _status(result, file_name)
        yield ({"result": result, "view": view}, *ours, *pending, gr.skip(), status, gr.skip(), "")
        try:
            add_baselines(result, cache)
            shown = pictures(result, view)
            downloads = [str(path) for path in write_downloads(result, Path(photo).stem)]
        except Exception as error:  # noqa: BLE001 - keep ours on the page, say what failed
            LOGGER.exception("demo: baselines of %s failed", file_name)
            yield (gr.skip(), *ours, *pending, "", f"{status} · ⚠️ baselines failed: {error}", None, "")
            return
        yield (
            {"result": result, "view": view},
            *ours,
            *[gr.Image(shown[name], label=_caption(result, name)) for name in BASELINES],
            _summary(result),
            status,
            downloads,
            "",
        )

    def make_select(name: str):
        def on_select(state, evt: gr.SelectData):
            result: Tokenization | None = state and state["result"]
            if result is None or name not in result.label_maps:  # nothing shown yet
                return gr.skip(), ""
            label_map = result.label_maps[name]
            x, y = (int(v) for v in evt.index)
            try:
                region = region_at(label_map, x, y)
            except ValueError as error:
                return gr.skip(), str(error)
            if name == "ours" or state["view"] == "overlay":
                base = region_overlay(result.image, label_map)
            else:
                base = mean_colour_image(result.image, label_map)
            x0, y0, x1, y1 = region["box"]
            info = (
                f"**{TITLES[name]}: token {region['index']}** of {result.tokens[name]} · area {region['area']:,} px "
                f"({100 * region['area_fraction']:.1f} % of the image) · box x {x0}–{x1}, y {y0}–{y1}"
            )
            return gr.Image(highlight_region(base, label_map, region["index"])), info

        return on_select

    with gr.Blocks(title="Subobject tokens", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        state = gr.State(None, time_to_live=3600)  # the last result per visitor (arrays): freed after an hour
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                photo = gr.File(
                    label="photo", file_types=["image"], value=examples[0], elem_id="photo", height=110
                )
                gr.Examples([[path] for path in examples], inputs=[photo], label="example photos")
                max_tokens = gr.Slider(
                    1,
                    512,
                    value=DEFAULT_MAX_TOKENS,
                    step=1,
                    label="token budget (max tokens)",
                    elem_id="budget",
                )
                model_box = gr.Dropdown(
                    model_names,
                    value=model,
                    allow_custom_value=True,
                    label="boundary model",
                    info=f"{describe_names(baselines=False)}",
                    elem_id="model",
                )
                with gr.Accordion("EPOC and model settings", open=False):
                    threshold = gr.Slider(0.01, 0.99, value=0.1, step=0.01, label="boundary threshold")
                    seeds = gr.Radio(
                        list(SEED_MODES),
                        value=DEFAULT_SEEDS,
                        label="seeds",
                        info="threshold: regions under the threshold; minima: also every regional minimum "
                        "(fills the budget)",
                    )
                    min_area = gr.Number(
                        0,
                        precision=0,
                        minimum=0,
                        label="min area (px)",
                        info="smaller regions merge into a neighbour first (0: none)",
                    )
                    resolution = gr.Number(
                        0, precision=0, minimum=0, label="model resolution (0: the checkpoint's own)"
                    )
                ground_truth = gr.File(
                    label="ground truth (optional): label map .png / .npy, or BSDS .mat",
                    file_types=[".png", ".npy", ".mat", ".tif", ".tiff", ".bmp"],
                    elem_id="ground-truth",
                    height=130,
                )
                view = gr.Radio(["overlay", "mean colour"], value="overlay", label="show the comparison as")
            with gr.Column(scale=3):
                status = gr.Markdown("", elem_id="status")
                image_options = {
                    "type": "numpy",
                    "format": "png",
                    "interactive": False,
                    "buttons": ["fullscreen"],
                }
                with gr.Row():
                    boundary_map = gr.Image(label="boundary map", elem_id="boundary-map", **image_options)
                    overlay = gr.Image(label="ours", elem_id="ours-overlay", **image_options)
                    mean_colour = gr.Image(
                        label="ours: mean colour", elem_id="ours-mean-colour", **image_options
                    )
                with gr.Row():
                    compared = [
                        gr.Image(label=TITLES[name], elem_id=name, **image_options) for name in BASELINES
                    ]
                region_info = gr.Markdown("", elem_id="region-info")
                with gr.Row():
                    summary = gr.Markdown("", elem_id="summary")
                    downloads = gr.File(
                        label="downloads: label map (16-bit PNG, .npy), composite PNG",
                        file_count="multiple",
                        interactive=False,
                        elem_id="downloads",
                    )

        inputs = [photo, model_box, max_tokens, threshold, seeds, min_area, resolution, ground_truth, view]
        outputs = [
            state,
            boundary_map,
            overlay,
            mean_colour,
            *compared,
            summary,
            status,
            downloads,
            region_info,
        ]
        events = dict(fn=update, inputs=inputs, outputs=outputs, concurrency_id="tokenize")
        demo.load(**events, api_name="tokenize")  # the page opens on the first example, tokenized
        for component in inputs:  # any change reruns update; the boundary model only for a new image or model
            component.change(**events, trigger_mode="always_last", api_visibility="undocumented")
        for name, image in zip(("ours", *BASELINES), (overlay, *compared)):
            image.select(
                make_select(name),
                inputs=[state],
                outputs=[image, region_info],
                concurrency_id="tokenize",
                api_visibility="undocumented",
            )
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **options) -> None:
    """Serve ``demo`` (blocking) with ``LAUNCH_OPTIONS``; ``options`` override them."""
    demo.launch(server_name=host, server_port=port, ssr_mode=False, **{**LAUNCH_OPTIONS, **options})


__all__ = ["LAUNCH_OPTIONS", "build_demo", "launch"]
