"""The demo page: ``subobject-vlm demo`` (or ``python app.py``) serves it; needs ``pip install -e ".[demo]"``.

``pipeline`` holds the work as plain functions (no web framework); ``page`` builds the Gradio page on them.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "LAUNCH_OPTIONS": ".page",
    "Tokenization": ".pipeline",
    "build_demo": ".page",
    "demo_segmenter": ".pipeline",
    "launch": ".page",
    "prepare_image": ".pipeline",
    "tokenize": ".pipeline",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "LAUNCH_OPTIONS",
    "Tokenization",
    "build_demo",
    "demo_segmenter",
    "launch",
    "prepare_image",
    "tokenize",
]
