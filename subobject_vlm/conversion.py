"""Build a SubobjectLlava checkpoint from a transformers VLM checkpoint of any supported family.

>>> convert_checkpoint("llava-hf/llava-1.5-7b-hf", "checkpoints/subobject-llava-1.5-7b", max_tokens=64)
>>> convert_checkpoint("HuggingFaceTB/SmolVLM-256M-Instruct", "checkpoints/subobject-smolvlm-256m")

``subobject-vlm convert SRC DST``. The source's ``model_type`` picks its family spec
(:mod:`subobject_vlm.families`: LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision, Idefics3 / SmolVLM, PaliGemma, Gemma 3,
Qwen2-VL / Qwen2.5-VL); one path then serves them all. The vision tower and the language model (with its head)
are copied weight for weight (renamed to ``model.vision_tower.`` / ``model.language_model.``); the new
:class:`MaskPooledEmbedding` replaces the family's projector. Its input is ``[content (C), box (4), shape (R*R)]``
where the content is the mean of the same features the family projected patch by patch, so with
``reuse_projector`` (default, where the spec names the projector's layers and the shapes allow) its layers
start as the family's projector layers, acting on the content columns (zeros on the box/shape columns): a
region token then starts as the family's projection of the region's mean feature (for LLaVA: ``linear_1``,
``linear_2``). Otherwise the embedding is initialised at random with a last layer scaled to the word
embeddings. The start/end-of-image vectors are drawn with the word embeddings' mean and spread. Tokenizer,
chat template (its assistant turns marked ``{% generation %}``) and an equivalent image processor (the source's
side, mean, std, resampling and LLaVA-1.5's pad-to-square) are saved with the model as safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .configuration_subobject_llava import SubobjectLlavaConfig
from .devices import DTYPES
from .embedding import MaskPooledEmbedding
from .families import LANGUAGE_MODEL_PREFIX, PROJECTOR_PREFIX, VISION_TOWER_PREFIX, VLMFamily, family_of
from .segmentation.settings import DEFAULT_MAX_TOKENS

_DTYPES = {"auto": "auto", **DTYPES}
_BOUNDARY_KEY = "model.image_boundary_embeddings.weight"
_ACTIVATIONS = ("gelu", "relu", "silu")


def _feature_layer(family: VLMFamily, source_config) -> int | None:
    """The source's feature layer where its family reads one (LLaVA's ``vision_feature_layer``)."""
    if family.feature_layer is None:
        return None
    layer = getattr(source_config, family.feature_layer)
    if not isinstance(layer, int):
        raise ValueError(f"only a single {family.feature_layer} is supported, the source uses {layer!r}")
    strategy = getattr(source_config, "vision_feature_select_strategy", "default")
    if strategy not in ("default", "full"):
        raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}")
    return layer


def subobject_config(
    source_config,
    source_projector: dict[str, torch.Tensor],
    *,
    image_token_id: int,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    shape_resolution: int = 8,
) -> SubobjectLlavaConfig:
    """The SubobjectLlava config for a source VLM config: its vision and text configs, its family's feature
    reader, and a region embedding shaped like the family's projector (``source_projector``: the projector's
    tensors by name, shapes only are read) where the spec names its layers, else two layers."""
    family = family_of(source_config.model_type)
    layers = family.projector_layers
    depth, hidden_size = 2, None
    if layers:
        first = source_projector.get(f"{layers[0]}.weight")
        if first is None:
            raise ValueError(
                f"the source has no {family.projector_prefix}{layers[0]}.weight, the first layer of a "
                f"{family.name} projector"
            )
        depth = len(layers)
        hidden_size = int(first.shape[0]) if depth > 1 else None
    act = family.projector_act or getattr(source_config, "projector_hidden_act", "gelu")
    text_config = source_config.text_config
    return SubobjectLlavaConfig(
        vision_config=source_config.vision_config.to_dict(),
        text_config=text_config.to_dict(),
        feature_layer=_feature_layer(family, source_config),
        feature_fn=family.feature_fn,
        family=family.name,
        image_token_index=image_token_id,
        max_tokens_per_image=max_tokens,
        shape_resolution=shape_resolution,
        projector_depth=depth,
        projector_hidden_size=hidden_size,
        projector_hidden_act=act if act in _ACTIVATIONS else "gelu",
        tie_word_embeddings=bool(
            getattr(source_config, "tie_word_embeddings", False)
            or getattr(text_config, "tie_word_embeddings", False)
        ),
        pad_token_id=source_pad_token_id(source_config),
    )


def split_source_state(
    family: VLMFamily, source_state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A source state dict -> (the converted model's tensors, renamed to its module tree and shared, not
    copied; the family projector's tensors, by name under ``projector_prefix``). The spec's ``unused``
    tensors are left out."""
    renames = ((family.vision_prefix, VISION_TOWER_PREFIX), (family.text_prefix, LANGUAGE_MODEL_PREFIX))
    state, projector = {}, {}
    for key, tensor in source_state.items():
        if key.startswith(family.projector_prefix):
            projector[key[len(family.projector_prefix) :]] = tensor
            continue
        if key.startswith(family.unused):
            continue
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        state[key] = tensor
    return state, projector


def check_mapped_state(
    family: VLMFamily, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], src: str | Path
) -> None:
    """Raise ``ValueError`` (one line) naming the tensors that are missing from ``state``, left over or
    misshaped against ``expected`` (the converted model's state dict; meta tensors do: keys and shapes only).
    The region embedding and the start/end vectors are new, so not expected from the source."""
    new = (PROJECTOR_PREFIX, _BOUNDARY_KEY)
    leftover = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not k.startswith(new))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in state
        if k in expected and expected[k].shape != state[k].shape
    )
    if leftover or missing or misshaped:
        raise ValueError(
            f"{src} does not map onto SubobjectLlava as a {family.name} model: missing {missing[:8]}, "
            f"unexpected {leftover[:8]}, misshaped {misshaped[:8]}"
        )


def source_pad_token_id(source_config) -> int | None:
    """The padding id of a VLM config: llava-hf keeps it at the top level (32001 for llava-1.5), other
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
    """Parameters of the model a VLM config builds, counted on the meta device (no memory, no weights):
    exact for every family transformers can build; ``None`` for a config it cannot."""
    from transformers import AutoModelForImageTextToText

    try:
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(source_config)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return sum(p.numel() for p in model.parameters())


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
    source_layers: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None,
) -> bool:
    """Initialise ``embedding`` in place; returns whether the source projector's layers were reused.

    Args:
        embedding: a :class:`MaskPooledEmbedding` (``Linear(C + 4 + R*R, H) -> act -> ... -> Linear(H, D)``).
        word_embeddings: (V, D) the language model's input embeddings as the model sees them (sets the
            output scale).
        source_layers: the family projector's ``(weight, bias)`` per ``Linear``, first to last (bias may be
            ``None``), or None. A first weight of ``k * C`` columns (``k`` concatenated patches) is folded to
            ``C`` by summing its ``k`` column blocks; the box and shape columns start at zero.
    """
    layers = [layer for layer in embedding.projector if isinstance(layer, torch.nn.Linear)]
    channels = embedding.in_channels
    with torch.no_grad():
        if source_layers is not None and projector_fits(embedding, source_layers):
            layers[0].weight.zero_()
            layers[0].weight[:, :channels] = _fold_columns(source_layers[0][0], channels)
            for i, (layer, (_, bias)) in enumerate(zip(layers, source_layers)):
                if i:
                    layer.weight.copy_(source_layers[i][0])
                layer.bias.copy_(bias) if bias is not None else layer.bias.zero_()
            return True
        for layer in layers:
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
        # outputs about as large as word embeddings: scale the last layer by their std
        last = layers[-1]
        last.weight.mul_(float(word_embeddings.float().std()) / max(float(last.weight.std()), 1e-8) / 10)
    return False


def projector_fits(
    embedding: MaskPooledEmbedding, source_layers: list[tuple[torch.Tensor, torch.Tensor | None]]
) -> bool:
    """Whether a source projector's ``(weight, bias)`` layers can start ``embedding`` (:func:`init_embedding`):
    as many ``Linear`` layers, the first one's input a multiple of the feature width, the rest equal in shape.
    Reads shapes only (meta tensors do)."""
    layers = [layer for layer in embedding.projector if isinstance(layer, torch.nn.Linear)]
    if len(source_layers) != len(layers):
        return False
    first = source_layers[0][0]
    channels = embedding.in_channels
    shapes = [(first.shape[0], first.shape[1] % channels), *(tuple(w.shape) for w, _ in source_layers[1:])]
    return shapes == [(layers[0].out_features, 0), *(tuple(x.weight.shape) for x in layers[1:])]


def _fold_columns(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """(out, k * C) -> (out, C): the sum of the ``k`` column blocks (a layer fed ``k`` equal patches)."""
    out, width = weight.shape
    return weight.float().view(out, width // channels, channels).sum(1)


def _input_embedding_weights(model) -> torch.Tensor:
    """(V, D) word embeddings as the language model receives them: Gemma's embeddings scale by ``sqrt(D)``."""
    embeddings = model.get_input_embeddings()
    scale = getattr(embeddings, "scalar_embed_scale", 1.0)
    return embeddings.weight if scale == 1.0 else embeddings.weight * scale


def _torchvision_resample(resample):
    """The source's resampling filter, where torchvision resizes tensors with it; else bicubic (SmolVLM's
    Lanczos)."""
    from transformers.image_utils import PILImageResampling

    usable = (PILImageResampling.NEAREST, PILImageResampling.BILINEAR, PILImageResampling.BICUBIC)
    return resample if resample in usable else PILImageResampling.BICUBIC


def _image_side(family: VLMFamily, source_image_processor, vision_config) -> int:
    """The square side images are resized to: the spec's side in patches, else the source processor's crop,
    else the vision tower's ``image_size``."""
    if family.image_patches is not None:
        return family.image_patches * vision_config.patch_size
    crop = getattr(source_image_processor, "crop_size", None) or {}
    return crop.get("height") or vision_config.image_size


def chat_template_with_generation_markers(
    tokenizer, family: VLMFamily, src: str | Path = "the source"
) -> str:
    """The converted checkpoint's chat template: the source tokenizer's (else the family spec's), with its
    assistant turns marked ``{% generation %}`` (:func:`~subobject_vlm.processing_subobject_llava.with_generation_markers`)
    so that TRL's ``assistant_only_loss`` trains on the replies only. A template that cannot be marked is kept as
    it is, with a one-line warning."""
    import warnings

    from .processing_subobject_llava import with_generation_markers

    template = tokenizer.chat_template or family.chat_template
    if not isinstance(template, str):  # several named templates: kept as they are
        return template
    tokens = {
        name: getattr(tokenizer, name) for name in ("bos_token", "eos_token") if getattr(tokenizer, name)
    }
    marked = with_generation_markers(template, **tokens)
    if marked is None:
        warnings.warn(
            f"the chat template of {src} could not be given {{% generation %}} markers (its earlier turns change as "
            "turns are added): kept as it is, so assistant_only_loss cannot tell the replies apart",
            stacklevel=2,
        )
        return template
    return marked


def convert_checkpoint(
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
    """Convert a VLM checkpoint (hub id or local folder) of a supported family into a SubobjectLlava at ``dst``.

    Args:
        src: a checkpoint with its processor (e.g. ``llava-hf/llava-1.5-7b-hf``,
            ``HuggingFaceTB/SmolVLM-256M-Instruct``, ``Qwen/Qwen2-VL-2B-Instruct``); its ``model_type`` must be
            one of :func:`subobject_vlm.families.supported_model_types`.
        dst: output folder (created): ``config.json``, ``model*.safetensors``, tokenizer, processor files.
        max_tokens: regions per image (image processor budget and ``max_tokens_per_image``).
        shape_resolution: R, side of the region shape picture.
        label_size: side of the label maps (default: the image size).
        boundary_model: the image processor's boundary model (``default``, a DirectSAM id/path, a baseline).
        reuse_projector: start the embedding from the family's projector (see the module docstring).
        dtype: ``auto`` (the checkpoint's), ``float32``, ``bfloat16`` or ``float16``.
        seed: seed of the new parameters' initialisation.
        check_memory: refuse, before any weight is read, a source whose weights do not fit in the memory
            available now (:func:`check_memory_for_conversion`).

    The source's ``pad_token_id`` is kept. Raises ``ValueError`` when the source's family is not supported
    (before anything is built), when it cannot fit in memory, and when the source weights do not cover the new
    model exactly (anything missing, misshaped or left over other than the family's projector).
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    from .processing_subobject_llava import image_token_id

    _check_source_name(src)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    source_config = AutoConfig.from_pretrained(str(src))  # a few kB: checked before any weight is read
    try:
        family = family_of(source_config.model_type)
    except ValueError as error:
        raise ValueError(f"{src!r} is a {source_config.model_type!r} checkpoint: {error}") from None
    if check_memory:
        check_memory_for_conversion(src, source_config, dtype)
    # the family's own processor class is not needed (SmolVLM's wants num2words): its tokenizer (with the
    # chat template) and its image processor are
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    source_images = AutoImageProcessor.from_pretrained(str(src))
    image_token = image_token_id(tokenizer, family.image_token)
    if image_token is None:
        raise ValueError(
            f"the tokenizer of {src} does not encode {family.name}'s image token {family.image_token!r}"
        )

    source = _load_source_model(src, family, dtype)
    model = _subobject_model(
        source,
        family,
        src,
        image_token_id=image_token,
        max_tokens=max_tokens,
        shape_resolution=shape_resolution,
        reuse_projector=reuse_projector,
        seed=seed,
    )
    dst = Path(dst)
    model.save_pretrained(dst, safe_serialization=True)
    processor = _subobject_processor(
        family,
        tokenizer,
        source_images,
        model.config.vision_config,
        src,
        max_tokens=max_tokens,
        label_size=label_size,
        boundary_model=boundary_model,
    )
    processor.save_pretrained(dst)
    return dst


def _check_source_name(src: str | Path) -> None:
    """An existing folder must hold a checkpoint; anything else must read as a hub id (``owner/name``)."""
    from .segmentation.registry import check_checkpoint_folder, is_hub_id

    if Path(src).expanduser().exists():
        check_checkpoint_folder(Path(src).expanduser(), model_class="AutoModelForImageTextToText")
    elif not is_hub_id(str(src)):
        raise ValueError(f"{src!r} is neither an existing checkpoint folder nor a hub id (owner/name)")


def _load_source_model(src: str | Path, family: VLMFamily, dtype: str):
    """The source model in ``dtype``; refused when transformers would have drawn any of its weights at random."""
    from transformers import AutoModelForImageTextToText

    source, loading = AutoModelForImageTextToText.from_pretrained(
        str(src),
        dtype=_DTYPES[dtype],
        use_safetensors=True,
        output_loading_info=True,
        ignore_mismatched_sizes=True,
    )
    missing = sorted(loading["missing_keys"])
    misshaped = sorted(
        f"{key} {tuple(saved)} != {tuple(built)}" for key, saved, built in loading["mismatched_keys"]
    )
    if missing or misshaped:  # transformers drew them at random: a converted model must not start from those
        raise ValueError(
            f"{src} does not hold its own {family.name} model's weights: missing {missing[:8]}, misshaped {misshaped[:8]}"
        )
    return source


def _subobject_model(
    source,
    family: VLMFamily,
    src: str | Path,
    *,
    image_token_id: int,
    max_tokens: int,
    shape_resolution: int,
    reuse_projector: bool,
    seed: int,
):
    """The SubobjectLlava on ``source``'s weights (shared, not copied): towers renamed, the family's projector
    replaced by the region embedding, and the start/end-of-image vectors drawn (from ``seed``)."""
    from .modeling_subobject_llava import SubobjectLlavaForConditionalGeneration

    state, source_projector = split_source_state(family, source.state_dict())
    config = subobject_config(
        source.config,
        source_projector,
        image_token_id=image_token_id,
        max_tokens=max_tokens,
        shape_resolution=shape_resolution,
    )
    weight_dtype = next(source.parameters()).dtype
    config.dtype = weight_dtype
    with torch.device("meta"):
        model = SubobjectLlavaForConditionalGeneration(config)
    expected = model.state_dict()
    check_mapped_state(family, state, expected, src)

    torch.manual_seed(seed)
    embedding = model.model.multi_modal_projector.to_empty(device="cpu").float()
    words = _input_embedding_weights(source)
    names = family.projector_layers
    layers = [(source_projector[f"{n}.weight"], source_projector.get(f"{n}.bias")) for n in names]
    init_embedding(embedding, words, layers if reuse_projector and layers else None)
    for name, tensor in embedding.state_dict().items():
        state[f"{PROJECTOR_PREFIX}{name}"] = tensor.to(weight_dtype)
    hidden = config.text_config.hidden_size
    words = words.float()
    boundary = words.mean(0) + torch.randn(2, hidden) * words.std(0)  # (2, D) start, end
    state[_BOUNDARY_KEY] = boundary.to(weight_dtype)
    unfilled = sorted(set(expected) - set(state))
    if unfilled:  # pragma: no cover - guarded by the checks above
        raise ValueError(f"internal error: no weights for {unfilled}")

    model.load_state_dict(state, assign=True, strict=True)  # shares the source tensors: no second copy
    return model


def _subobject_processor(
    family: VLMFamily,
    tokenizer,
    source_images,
    vision_config,
    src: str | Path,
    *,
    max_tokens: int,
    label_size: int | None,
    boundary_model: str,
):
    """The converted model's processor: an image processor equivalent to the source's (side, mean, std,
    resampling, padding) and the source's tokenizer, whose chat template gains ``{% generation %}`` markers."""
    from .image_processing_subobject import SubobjectImageProcessor
    from .processing_subobject_llava import SubobjectLlavaProcessor

    side = _image_side(family, source_images, vision_config)
    image_processor = SubobjectImageProcessor(
        size={"height": side, "width": side},
        label_size={"height": label_size or side, "width": label_size or side},
        image_mean=list(source_images.image_mean),
        image_std=list(source_images.image_std),
        resample=_torchvision_resample(source_images.resample),
        max_tokens=max_tokens,
        boundary_model=boundary_model,
        do_pad=family.pad_to_square,
    )
    chat_template = chat_template_with_generation_markers(tokenizer, family, src)
    tokenizer.chat_template = chat_template  # the tokenizer saved with it says the same
    return SubobjectLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template,
        image_token=family.image_token,
    )


__all__ = [
    "available_memory_bytes",
    "chat_template_with_generation_markers",
    "check_mapped_state",
    "check_memory_for_conversion",
    "convert_checkpoint",
    "estimate_parameters",
    "init_embedding",
    "projector_fits",
    "split_source_state",
    "subobject_config",
]
