"""The demo's web page (Gradio): a photo in, its subobject tokens next to every registered label-map tokenizer
(patches, SLIC, Felzenszwalb, ...) out.

``build_demo()`` returns the ``gr.Blocks``; ``subobject-vlm demo`` and the repository's ``app.py`` (a Hugging
Face Space) launch it with ``LAUNCH_OPTIONS``. The work is done by ``pipeline``'s plain functions; this module
only wires them to components. Nothing here phones home: Gradio's analytics are off, the theme's fonts are
served by the app itself, and no model is downloaded unless a hub id is typed into the model box.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from ..segmentation.registry import BOUNDARY, describe_names, registered_names, registry_entry  # noqa: E402
from ..segmentation.segmenter import Segmenter  # noqa: E402
from ..segmentation.settings import (  # noqa: E402
    DEFAULT_MAX_TOKENS,
    DEFAULT_SEEDS,
    SEED_MODES,
    SegmentationSettings,
)
from ..segmentation.visualize import mean_colour_image, region_overlay  # noqa: E402
from .pipeline import (  # noqa: E402
    Tokenization,
    add_baselines,
    check_boundary_model_name,
    comparison_names,
    demo_segmenter,
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
TITLES = {"ours": "ours", "patch": "patches", "slic": "SLIC", "felzenszwalb": "Felzenszwalb"}  # the built-ins
LAUNCH_OPTIONS = {"show_error": True, "max_file_size": "64mb", "theme": gr.themes.Default()}
INTRO = """# Subobject-level image tokenization
Each region is one token of a vision-language model: cut along predicted boundaries (EPOC), no pixel dropped.
Upload a photo or pick an example; the row below tokenizes it with {compared} at
**the same token count**. Click a region to see its token. Moving the budget reruns only the cheap part: the
boundary map is cached.
"""
IMAGE_OPTIONS = {"type": "numpy", "format": "png", "interactive": False, "buttons": ["fullscreen"]}


def title(name: str) -> str:
    """A tokenizer's name on the page: ``TITLES`` for the built-ins, else its registry entry's summary (the
    first line of its factory's docstring), else the name itself."""
    if name in TITLES:
        return TITLES[name]
    entry = registry_entry(name)
    summary = entry.summary.rstrip(".") if entry is not None else ""
    if entry is not None and entry.family and summary:  # "SAM's automatic masks as label maps (sam-vit-base)"
        checkpoint = name.partition(":")[2].rstrip("/\\")
        return f"{summary.split(' (')[0]} ({Path(checkpoint).name or checkpoint})"
    return summary or name


def _caption(result: Tokenization, name: str, what: str = "") -> str:
    """``"SLIC · 64 tokens · recall 0.71"``: the tokenizer, its count, and its recall where there is a ground
    truth."""
    caption = f"{title(name)}{what} · {result.tokens[name]} tokens"
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
        name_shown = f"ours ({result.settings.boundary_model})" if name == "ours" else title(name)
        lines.append(f"| {name_shown} | {count} |" + (f" {result.recall[name]:.3f} |" if has_gt else ""))
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


def _blank(status: str, comparisons: list[str], warn: bool = False) -> tuple:
    """Every output emptied (captions back to their titles) and ``status`` in the status box; with ``warn``
    also in a toast."""
    if warn:
        gr.Warning(status.removeprefix("⚠️ "))
    labels = ["boundary map", "ours", "ours: mean colour", *(title(name) for name in comparisons)]
    return (None, *(gr.Image(None, label=label) for label in labels), "", status, None, "")


def _settings(
    model_name, max_tokens, threshold, seeds, min_area, resolution, device: str
) -> SegmentationSettings:
    """The settings the page's inputs name (the model box checked: a boundary model)."""
    options = {"device": device}
    if resolution:
        options["resolution"] = int(resolution)
    return SegmentationSettings(
        check_boundary_model_name(model_name),
        options,
        threshold=float(threshold),
        max_tokens=int(max_tokens),
        min_area=int(min_area or 0),
        seeds=seeds,
    )


def _ground_truth_or_none(ground_truth, original_shape, shape) -> list | None:
    """The ground truth's boundaries, or ``None`` (no file; a file that cannot be read: a warning)."""
    if not ground_truth:
        return None
    try:
        return read_ground_truth(ground_truth, original_shape, shape)
    except Exception as error:  # noqa: BLE001 - any unreadable ground truth: shown without recall
        gr.Warning(f"ground truth ignored: {error}")
        return None


def _make_update(
    segmenter: Segmenter, device: str, comparisons: list[str], options: Mapping[str, Mapping] | None = None
):
    """The page's handler: ours first (the boundary map cached: a new budget costs EPOC only), then each
    comparison at our count; a generator, so the page shows each step as soon as it is done."""

    def update(photo, model_name, max_tokens, threshold, seeds, min_area, resolution, ground_truth, view):
        if not photo:
            yield _blank("Upload a photo or pick an example.", comparisons)
            return
        file_name = Path(photo).name
        try:
            image, original_shape, notes = prepare_image(photo)
            settings = _settings(model_name, max_tokens, threshold, seeds, min_area, resolution, device)
            gt_boundaries = _ground_truth_or_none(ground_truth, original_shape, image.shape[:2])
            result = tokenize(image, settings, segmenter, gt_boundaries, baselines=False)
            shown = pictures(result, view)
        except (ValueError, OSError) as error:  # bad input: say what, in the page, and keep serving
            yield _blank(f"⚠️ {error}", comparisons, warn=True)
            return
        except Exception as error:  # noqa: BLE001 - a broken checkpoint or a bug: say so, keep serving
            LOGGER.exception("demo: %s failed", file_name)
            yield _blank(f"⚠️ {file_name}: {type(error).__name__}: {error}", comparisons, warn=True)
            return
        for note in notes:
            gr.Warning(note)
        ours = (
            gr.Image(shown["boundary_map"], label=f"boundary map ({settings.boundary_model})"),
            gr.Image(shown["overlay"], label=_caption(result, "ours", " (click a region)")),
            gr.Image(shown["mean_colour"], label=_caption(result, "ours", ": mean colour")),
        )
        pending = [gr.Image(label=f"{title(name)} · computing…") for name in comparisons]
        status = _status(result, file_name)
        yield ({"result": result, "view": view}, *ours, *pending, gr.skip(), status, gr.skip(), "")
        try:
            add_baselines(result, segmenter, comparisons, device, options)
            shown = pictures(result, view)
            downloads = [str(path) for path in write_downloads(result, Path(photo).stem)]
        except Exception as error:  # noqa: BLE001 - keep ours on the page, say what failed
            LOGGER.exception("demo: baselines of %s failed", file_name)
            yield (gr.skip(), *ours, *pending, "", f"{status} · ⚠️ baselines failed: {error}", None, "")
            return
        compared = [gr.Image(shown[name], label=_caption(result, name)) for name in comparisons]
        yield ({"result": result, "view": view}, *ours, *compared, _summary(result), status, downloads, "")

    return update


def _make_select(name: str):
    """The click handler of tokenizer ``name``'s image: the token clicked, outlined and described."""

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
            f"**{title(name)}: token {region['index']}** of {result.tokens[name]} · area {region['area']:,} px "
            f"({100 * region['area_fraction']:.1f} % of the image) · box x {x0}–{x1}, y {y0}–{y1}"
        )
        return gr.Image(highlight_region(base, label_map, region["index"])), info

    return on_select


@dataclass
class _Page:
    """The page's components: the handler's inputs (in its argument order) and outputs, and the clickable
    images by tokenizer."""

    inputs: list
    outputs: list
    state: gr.State
    region_info: gr.Markdown
    clickable: dict[str, gr.Image]


def _settings_column(model: str, examples: list[str]) -> list:
    """The left column: photo, budget, model, EPOC options, ground truth, view (the handler's inputs)."""
    photo = gr.File(label="photo", file_types=["image"], value=examples[0], elem_id="photo", height=110)
    gr.Examples([[path] for path in examples], inputs=[photo], label="example photos")
    max_tokens = gr.Slider(
        1, 512, value=DEFAULT_MAX_TOKENS, step=1, label="token budget (max tokens)", elem_id="budget"
    )
    model_box = (
        gr.Dropdown(  # the registered boundary models; any other name typed (a folder, family:checkpoint)
            registered_names(BOUNDARY, families=False),
            value=model,
            allow_custom_value=True,
            label="boundary model",
            info=f"{describe_names(baselines=False)}",
            elem_id="model",
        )
    )
    with gr.Accordion("EPOC and model settings", open=False):
        threshold = gr.Slider(0.01, 0.99, value=0.1, step=0.01, label="boundary threshold")
        seeds = gr.Radio(
            list(SEED_MODES),
            value=DEFAULT_SEEDS,
            label="seeds",
            info="threshold: regions under the threshold; minima: also every regional minimum (fills the budget)",
        )
        min_area = gr.Number(
            0,
            precision=0,
            minimum=0,
            label="min area (px)",
            info="smaller regions merge into a neighbour first (0: none)",
        )
        resolution = gr.Number(0, precision=0, minimum=0, label="model resolution (0: the checkpoint's own)")
    ground_truth = gr.File(
        label="ground truth (optional): label map .png / .npy, or BSDS .mat",
        file_types=[".png", ".npy", ".mat", ".tif", ".tiff", ".bmp"],
        elem_id="ground-truth",
        height=130,
    )
    view = gr.Radio(["overlay", "mean colour"], value="overlay", label="show the comparison as")
    return [photo, model_box, max_tokens, threshold, seeds, min_area, resolution, ground_truth, view]


def _results_column(comparisons: list[str]) -> tuple[list, gr.Markdown, dict[str, gr.Image]]:
    """The right column: status, our three pictures, one per comparison, region facts, summary, downloads.
    Returns the handler's outputs after its state, the region box and the clickable images by tokenizer."""
    status = gr.Markdown("", elem_id="status")
    with gr.Row():
        boundary_map = gr.Image(label="boundary map", elem_id="boundary-map", **IMAGE_OPTIONS)
        overlay = gr.Image(label="ours", elem_id="ours-overlay", **IMAGE_OPTIONS)
        mean_colour = gr.Image(label="ours: mean colour", elem_id="ours-mean-colour", **IMAGE_OPTIONS)
    with gr.Row():
        compared = [gr.Image(label=title(name), elem_id=name, **IMAGE_OPTIONS) for name in comparisons]
    region_info = gr.Markdown("", elem_id="region-info")
    with gr.Row():
        summary = gr.Markdown("", elem_id="summary")
        downloads = gr.File(
            label="downloads: label map (16-bit PNG, .npy), composite PNG",
            file_count="multiple",
            interactive=False,
            elem_id="downloads",
        )
    outputs = [boundary_map, overlay, mean_colour, *compared, summary, status, downloads, region_info]
    return outputs, region_info, dict(zip(["ours", *comparisons], [overlay, *compared]))


def _layout(model: str, comparisons: list[str]) -> _Page:
    """The page's components, laid out (inside a ``gr.Blocks``)."""
    state = gr.State(None, time_to_live=3600)  # the last result per visitor (arrays): freed after an hour
    titles = [title(name) for name in comparisons]
    compared = " and ".join([", ".join(titles[:-1]), *titles[-1:]] if len(titles) > 1 else titles)
    gr.Markdown(INTRO.format(compared=compared))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            inputs = _settings_column(model, [str(path) for path in example_photos()])
        with gr.Column(scale=3):
            outputs, region_info, clickable = _results_column(comparisons)
    return _Page(inputs, [state, *outputs], state, region_info, clickable)


def _connect(demo: gr.Blocks, page: _Page, update) -> None:
    """Events: the page opens on the first example, any input change reruns ``update`` (the boundary model
    only for a new image or model), a click on an image describes its token."""
    events = dict(fn=update, inputs=page.inputs, outputs=page.outputs, concurrency_id="tokenize")
    demo.load(**events, api_name="tokenize")
    for component in page.inputs:
        component.change(**events, trigger_mode="always_last", api_visibility="undocumented")
    for name, image in page.clickable.items():
        image.select(
            _make_select(name),
            inputs=[page.state],
            outputs=[image, page.region_info],
            concurrency_id="tokenize",
            api_visibility="undocumented",
        )


def build_demo(
    model: str = "default",
    device: str = "cpu",
    segmenter: Segmenter | None = None,
    compare: Sequence[str] = (),
    compare_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> gr.Blocks:
    """The demo page.

    Args:
        model: the boundary model selected at start: a registered name, ``family:checkpoint``, a local
            checkpoint folder or a hub id.
        device: torch device of the boundary model.
        segmenter: keeps boundary maps and label maps between events (``demo_segmenter()`` by default; tests
            pass theirs to count the model's runs).
        compare: mask tokenizers added to the comparison row (``sam:CHECKPOINT``, ``mask2former:CHECKPOINT``,
            ...), run on ``device`` at (at most) our count.
        compare_options: a comparison's own options by name (``{"sam:CKPT": {"points_per_side": 16}}``).
    """
    segmenter = segmenter if segmenter is not None else demo_segmenter()
    comparisons = comparison_names(compare)  # the label-map tokenizers registered now, then those asked for
    with gr.Blocks(title="Subobject tokens", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        page = _layout(model, comparisons)
        _connect(demo, page, _make_update(segmenter, device, comparisons, compare_options))
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **options) -> None:
    """Serve ``demo`` (blocking) with ``LAUNCH_OPTIONS``; ``options`` override them."""
    demo.launch(server_name=host, server_port=port, ssr_mode=False, **{**LAUNCH_OPTIONS, **options})


__all__ = ["LAUNCH_OPTIONS", "build_demo", "launch"]
