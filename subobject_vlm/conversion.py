"""Build a SubobjectLlava checkpoint from a llava-hf ``LlavaForConditionalGeneration`` checkpoint.

>>> convert_llava_checkpoint("llava-hf/llava-1.5-7b-hf", "checkpoints/subobject-llava-1.5-7b", max_tokens=64)

``subobject-vlm convert SRC DST``. The vision tower and the language model (with its head) are copied
weight for weight; the new :class:`MaskPooledEmbedding` replaces LLaVA's patch projector. Its input is
``[content (C), box (4), shape (R*R)]`` where the content is the mean of the same CLIP features LLaVA projected
patch by patch, so with ``reuse_projector`` (default, when the shapes allow) its first layer takes LLaVA's
``linear_1`` on the content columns (zeros on the box/shape columns) and its last layer LLaVA's ``linear_2``:
a region token then starts as LLaVA's projection of the region's mean feature. Otherwise the embedding is
initialised at random with a last layer scaled to the word embeddings. The start/end-of-image vectors are
drawn with the word embeddings' mean and spread. Tokenizer, chat template and an equivalent image processor
(the source CLIP processor's size, mean, std and resampling) are saved with the model as safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .configuration_subobject_llava import SubobjectLlavaConfig
from .devices import DTYPES
from .embedding import MaskPooledEmbedding
from .segmentation.settings import DEFAULT_MAX_TOKENS

_DTYPES = {"auto": "auto", **DTYPES}
_PROJECTOR_PREFIX = "model.multi_modal_projector."
_NEW_PREFIXES = (_PROJECTOR_PREFIX, "model.image_boundary_embeddings.")


def _subobject_config(source_config, max_tokens: int, shape_resolution: int) -> SubobjectLlavaConfig:
    feature_layer = source_config.vision_feature_layer
    if not isinstance(feature_layer, int):
        raise ValueError(
            f"only a single vision_feature_layer is supported, the source uses {feature_layer!r}"
        )
    if source_config.vision_feature_select_strategy not in ("default", "full"):
        raise ValueError(
            f"unknown vision_feature_select_strategy {source_config.vision_feature_select_strategy!r}"
        )
    return SubobjectLlavaConfig(
        vision_config=source_config.vision_config.to_dict(),
        text_config=source_config.text_config.to_dict(),
        feature_layer=feature_layer,
        image_token_index=source_config.image_token_index,
        max_tokens_per_image=max_tokens,
        shape_resolution=shape_resolution,
        projector_depth=2,
        projector_hidden_act=source_config.projector_hidden_act
        if source_config.projector_hidden_act in ("gelu", "relu", "silu")
        else "gelu",
        tie_word_embeddings=bool(getattr(source_config, "tie_word_embeddings", False)),
        pad_token_id=source_pad_token_id(source_config),
    )


def source_pad_token_id(source_config) -> int | None:
    """The padding id of a LLaVA config: llava-hf keeps it at the top level (32001 for llava-1.5), some
    checkpoints in the text config only."""
    pad = getattr(source_config, "pad_token_id", None)
    return pad if pad is not None else getattr(source_config.text_config, "pad_token_id", None)


def available_memory_bytes() -> int | None:
    """Memory that can still be allocated without swapping: ``psutil``'s ``available`` where psutil is
    installed, else ``MemAvailable`` of ``/proc/meminfo`` (Linux); ``None`` where neither is known."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def estimate_parameters(source_config) -> int | None:
    """Parameters of a LLaVA from its config's sizes: a Llama-style language model (attention with grouped
    key/values, gated MLP, untied head unless tied), a ViT vision tower and the two-layer projector. Within
    0.01 % of the real count for llava-1.5-7b; ``None`` when a size is missing (an architecture this does not
    describe)."""
    text, vision = source_config.text_config, source_config.vision_config
    try:
        hidden, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
        heads = text.num_attention_heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        head_dim = getattr(text, "head_dim", None) or hidden // heads
        attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim  # q, o; k, v
        per_layer = attention + 3 * hidden * text.intermediate_size + 2 * hidden  # + gated MLP, two norms
        tied = getattr(text, "tie_word_embeddings", False) or getattr(
            source_config, "tie_word_embeddings", False
        )
        text_params = layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden
        width, depth = vision.hidden_size, vision.num_hidden_layers
        patches = (vision.image_size // vision.patch_size) ** 2 + 1  # + class token
        vision_params = (
            depth * (4 * width * width + 2 * width * vision.intermediate_size + 9 * width)
            + getattr(vision, "num_channels", 3) * vision.patch_size**2 * width
            + patches * width
        )
    except (AttributeError, TypeError, ZeroDivisionError):
        return None
    return int(text_params + vision_params + width * hidden + hidden * hidden)


def _dtype_bytes(dtype) -> int | None:
    """Bytes per element of a torch dtype or its name (``"bfloat16"``, ``"torch.float16"``); ``None`` if
    unknown."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    return dtype.itemsize if isinstance(dtype, torch.dtype) else None


def _stored_weight_bytes(folder: Path) -> int | None:
    """Bytes of the safetensors weights in a local checkpoint folder: the index's ``total_size``, else the
    files' sizes (headers included: a few kB more)."""
    import json

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            return int(json.loads(index.read_text())["metadata"]["total_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    files = list(folder.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


def check_memory_for_conversion(src: str | Path, source_config, dtype: str) -> None:
    """Refuse (``ValueError``, one line) a conversion whose weights cannot fit in the memory available now.

    The conversion holds the source weights once, in the target dtype (the new model shares them). Their size
    is the local checkpoint's stored bytes (rescaled to ``dtype``) or, for a hub id, the parameter count from
    the config's sizes (:func:`estimate_parameters`) times the bytes per element; nothing is checked where
    neither size nor available memory (:func:`available_memory_bytes`) can be known.
    """
    stored_bytes = _dtype_bytes(getattr(source_config, "dtype", None))
    target_bytes = stored_bytes if dtype == "auto" else _dtype_bytes(_DTYPES[dtype])
    folder = Path(src).expanduser()
    on_disk = _stored_weight_bytes(folder) if folder.is_dir() else None
    if on_disk is not None:
        needed = on_disk if not (stored_bytes and target_bytes) else on_disk // stored_bytes * target_bytes
        what = f"its weights ({on_disk / 2**30:.1f} GiB on disk)"
    else:
        params = estimate_parameters(source_config)
        if params is None:
            return
        needed = params * (target_bytes or 2)  # unknown dtype: at least half precision
        what = f"about {params / 1e9:.2f}B parameters"
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ValueError(
            f"converting {str(src)!r} needs about {needed / 2**30:.1f} GiB of memory for {what} in "
            f"{'its own dtype' if dtype == 'auto' else dtype}, but only {available / 2**30:.1f} GiB is "
            "available; free memory, use a machine with more, or pass --no-memory-check to try anyway"
        )


def init_embedding(
    embedding: MaskPooledEmbedding,
    word_embeddings: torch.Tensor,
    source_projector: dict[str, torch.Tensor] | None = None,
) -> bool:
    """Initialise ``embedding`` in place; returns whether the LLaVA projector weights were reused.

    Args:
        embedding: a two-layer :class:`MaskPooledEmbedding` (``Linear(C + 4 + R*R, D) -> act -> Linear(D, D)``).
        word_embeddings: (V, D) the language model's input embeddings (sets the output scale).
        source_projector: LLaVA's ``linear_1.{weight,bias}`` (D, C) and ``linear_2.{weight,bias}`` (D, D), or None.
    """
    first, last = embedding.projector[0], embedding.projector[-1]
    channels = embedding.in_channels
    with torch.no_grad():
        reusable = (
            source_projector is not None
            and len(embedding.projector) == 3
            and source_projector["linear_1.weight"].shape == (first.out_features, channels)
            and source_projector["linear_2.weight"].shape == tuple(last.weight.shape)
        )
        if reusable:
            first.weight.zero_()
            first.weight[:, :channels] = source_projector["linear_1.weight"]
            first.bias.copy_(source_projector["linear_1.bias"])
            last.weight.copy_(source_projector["linear_2.weight"])
            last.bias.copy_(source_projector["linear_2.bias"])
            return True
        for layer in embedding.projector:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
        # outputs about as large as word embeddings: scale the last layer by their std
        last.weight.mul_(float(word_embeddings.float().std()) / max(float(last.weight.std()), 1e-8) / 10)
    return False


def convert_llava_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    shape_resolution: int = 8,
    label_size: int | None = None,
    boundary_model: str = "default",
    reuse_projector: bool = True,
    dtype: str = "auto",
    seed: int = 0,
    check_memory: bool = True,
) -> Path:
    """Convert a llava-hf checkpoint (hub id or local folder) into a SubobjectLlava checkpoint at ``dst``.

    Args:
        src: ``LlavaForConditionalGeneration`` checkpoint with its processor (e.g. ``llava-hf/llava-1.5-7b-hf``).
        dst: output folder (created): ``config.json``, ``model*.safetensors``, tokenizer, processor files.
        max_tokens: regions per image (image processor budget and ``max_tokens_per_image``).
        shape_resolution: R, side of the region shape picture.
        label_size: side of the label maps (default: the image size).
        boundary_model: the image processor's boundary model (``default``, a DirectSAM id/path, a baseline).
        reuse_projector: start the embedding from LLaVA's projector (see the module docstring).
        dtype: ``auto`` (the checkpoint's), ``float32``, ``bfloat16`` or ``float16``.
        seed: seed of the new parameters' initialisation.
        check_memory: refuse, before any weight is read, a source whose weights do not fit in the memory
            available now (:func:`check_memory_for_conversion`).

    The source's ``pad_token_id`` is kept. Raises ``ValueError`` when the source is not a LLaVA, when it
    cannot fit in memory, and when the source weights do not cover the new model exactly (anything missing,
    misshaped or left over other than LLaVA's projector).
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from . import processing_subobject_llava  # noqa: F401 - registers AutoProcessor
    from .image_processing_subobject import SubobjectImageProcessor
    from .segmentation.registry import check_checkpoint_folder, is_hub_id

    if Path(src).expanduser().exists():
        check_checkpoint_folder(Path(src).expanduser())
    elif not is_hub_id(str(src)):
        raise ValueError(f"{src!r} is neither an existing checkpoint folder nor a hub id (owner/name)")
    from .modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
    from .processing_subobject_llava import SubobjectLlavaProcessor

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    from transformers import AutoConfig

    source_config = AutoConfig.from_pretrained(str(src))  # a few kB: checked before any weight is read
    if source_config.model_type != "llava":
        raise ValueError(
            f"{src!r} is a {source_config.model_type!r} checkpoint; convert takes a LLaVA checkpoint "
            "(model_type 'llava', e.g. llava-hf/llava-1.5-7b-hf)"
        )
    if check_memory:
        check_memory_for_conversion(src, source_config, dtype)
    source = LlavaForConditionalGeneration.from_pretrained(
        str(src), dtype=_DTYPES[dtype], use_safetensors=True
    )
    source_processor = AutoProcessor.from_pretrained(str(src))
    config = _subobject_config(source.config, max_tokens, shape_resolution)
    weight_dtype = next(source.parameters()).dtype
    config.dtype = weight_dtype

    with torch.device("meta"):
        expected = SubobjectLlavaForConditionalGeneration(config).state_dict()
    source_state = source.state_dict()
    state = {k: v for k, v in source_state.items() if not k.startswith(_PROJECTOR_PREFIX)}
    leftover = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not k.startswith(_NEW_PREFIXES))
    misshaped = sorted(k for k in state if k in expected and expected[k].shape != state[k].shape)
    if leftover or missing or misshaped:
        raise ValueError(
            f"{src} does not map onto SubobjectLlava: missing {missing[:8]}, unexpected {leftover[:8]}, "
            f"misshaped {misshaped[:8]}"
        )

    torch.manual_seed(seed)
    hidden = config.text_config.hidden_size
    embedding = MaskPooledEmbedding(
        config.vision_config.hidden_size,
        hidden,
        shape_resolution=shape_resolution,
        projector_depth=config.projector_depth,
        projector_hidden_size=config.projector_hidden_size,
        projector_hidden_act=config.projector_hidden_act,
    )
    word_embeddings = source.get_input_embeddings().weight
    llava_projector = {
        k[len(_PROJECTOR_PREFIX) :]: v.float()
        for k, v in source_state.items()
        if k.startswith(_PROJECTOR_PREFIX)
    }
    init_embedding(embedding, word_embeddings, llava_projector if reuse_projector else None)
    for name, tensor in embedding.state_dict().items():
        state[f"{_PROJECTOR_PREFIX}{name}"] = tensor.to(weight_dtype)
    words = word_embeddings.float()
    boundary = words.mean(0) + torch.randn(2, hidden) * words.std(0)  # (2, D) start, end
    state["model.image_boundary_embeddings.weight"] = boundary.to(weight_dtype)
    absent = sorted(set(expected) - set(state))
    if absent:  # pragma: no cover - guarded by the checks above
        raise ValueError(f"internal error: no weights for {absent}")

    with torch.device("meta"):
        model = SubobjectLlavaForConditionalGeneration(config)
    model.load_state_dict(state, assign=True, strict=True)  # shares the source tensors: no second copy
    dst = Path(dst)
    model.save_pretrained(dst, safe_serialization=True)

    clip = source_processor.image_processor
    crop = getattr(clip, "crop_size", None) or {}
    side = crop.get("height") or config.vision_config.image_size
    image_processor = SubobjectImageProcessor(
        size={"height": side, "width": side},
        label_size={"height": label_size or side, "width": label_size or side},
        image_mean=list(clip.image_mean),
        image_std=list(clip.image_std),
        resample=clip.resample,
        max_tokens=max_tokens,
        boundary_model=boundary_model,
    )
    tokenizer = source_processor.tokenizer
    processor = SubobjectLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=source_processor.chat_template,
        image_token=getattr(source_processor, "image_token", "<image>"),
    )
    if processor.image_token_id != config.image_token_id:
        raise ValueError(
            f"tokenizer image token id {processor.image_token_id} != source image_token_index {config.image_token_id}"
        )
    processor.save_pretrained(dst)
    return dst


__all__ = [
    "available_memory_bytes",
    "check_memory_for_conversion",
    "convert_llava_checkpoint",
    "estimate_parameters",
    "init_embedding",
]
