"""Tiny random mask models (SAM, SAM-HQ, SAM 2, EdgeTAM, Mask2Former, OneFormer) saved as checkpoints, for tests, examples and
benchmarks: built locally from their config classes, never downloaded.

>>> folder = save_tiny_mask_model("sam", tmp_path / "sam")   # config.json, model.safetensors, processor config
>>> tokenizer = create_sam_tokenizer(str(folder), pred_iou_thresh=0.0, stability_score_thresh=0.0)

Each is a few layers of a few channels (12k-220k parameters) at a 64-pixel input; its masks are random, which is
what the label-map rules are tested against: they overlap, leave holes and outnumber small budgets.
"""

from __future__ import annotations

from pathlib import Path

MASK_KINDS = ("sam", "sam_hq", "sam2", "edgetam", "mask2former", "oneformer")


def _tiny_swin():
    from transformers import SwinConfig

    return SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )


def _sam_like(config_class, model_class, processor_class, **decoder):
    """A SAM-style model (SAM, SAM-HQ): a two-layer ViT image encoder, a tiny prompt encoder and mask decoder
    (``decoder``: the decoder's own extra fields) at a 64-pixel input, and SAM's image processor."""
    from transformers import SamImageProcessor

    config = config_class(
        vision_config=dict(
            hidden_size=16,
            output_channels=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=8,
            window_size=4,
            global_attn_indexes=[1],
            mlp_dim=32,
            num_pos_feats=4,
        ),
        prompt_encoder_config=dict(hidden_size=8, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=8,
            mlp_dim=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            iou_head_hidden_dim=8,
            **decoder,
        ),
    )
    image_processor = SamImageProcessor(
        size={"longest_edge": 64},
        pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16},
        mask_pad_size={"height": 16, "width": 16},
    )
    return model_class(config), processor_class(image_processor=image_processor)


def _tiny_sam():
    from transformers import SamConfig, SamModel, SamProcessor

    return _sam_like(SamConfig, SamModel, SamProcessor)


def _tiny_sam_hq():
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor

    return _sam_like(SamHQConfig, SamHQModel, SamHQProcessor, vit_dim=16)  # vit_dim: the encoder's width


def _sam2_like(config_class, model_class, vision):
    """A SAM 2-style model (SAM 2, EdgeTAM) around the image encoder ``vision``: a tiny prompt encoder and mask
    decoder at a 64-pixel input, and SAM 2's processor."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    config = config_class(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=16, mlp_dim=16, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=8
        ),
    )
    image_processor = Sam2ImageProcessor(
        size={"height": 64, "width": 64}, mask_size={"height": 16, "width": 16}
    )
    return model_class(config), Sam2Processor(image_processor=image_processor)


def _tiny_sam2():
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2Model, Sam2VisionConfig

    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        image_size=[64, 64],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        fpn_hidden_size=16,
    )
    return _sam2_like(Sam2Config, Sam2Model, vision)


def _tiny_edgetam():
    from transformers import EdgeTamConfig, EdgeTamModel, EdgeTamVisionConfig, TimmWrapperConfig

    # timm's test ConvNeXt (built locally, no weights) for EdgeTAM's RepViT: four stages at strides 4-32
    backbone = TimmWrapperConfig(
        architecture="test_convnext",
        model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
    )
    vision = EdgeTamVisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 48, 32, 24],
        backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        fpn_hidden_size=16,
    )
    return _sam2_like(EdgeTamConfig, EdgeTamModel, vision)


def _tiny_mask2former():
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    config = Mask2FormerConfig(
        backbone_config=_tiny_swin(),
        feature_size=32,  # the pixel decoder's GroupNorm has 32 groups
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=12,
        num_labels=5,
    )
    # 64 px at least: the last Swin stage (1/32) keeps 2 x 2 features for the pixel decoder's GroupNorm
    image_processor = Mask2FormerImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32
    )
    return Mask2FormerForUniversalSegmentation(config), image_processor


def _tiny_oneformer():
    from transformers import (
        OneFormerConfig,
        OneFormerForUniversalSegmentation,
        OneFormerImageProcessor,
        OneFormerProcessor,
    )

    from .tiny import tiny_tokenizer

    config = OneFormerConfig(
        backbone_config=_tiny_swin(),
        num_queries=12,
        num_labels=5,
        task_seq_len=8,
        text_encoder_width=32,
        text_encoder_context_length=8,
        text_encoder_num_layers=1,
        text_encoder_vocab_size=16,
        text_encoder_n_ctx=2,
        conv_dim=32,
        mask_dim=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        query_dec_layers=1,
    )
    image_processor = OneFormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, num_text=2)
    tokenizer = tiny_tokenizer(words=["the", "task", "is", "panoptic", "semantic", "instance"])
    processor = OneFormerProcessor(
        image_processor=image_processor, tokenizer=tokenizer, max_seq_length=8, task_seq_length=8
    )
    return OneFormerForUniversalSegmentation(config), processor


def save_tiny_mask_model(kind: str, folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ``kind`` model (one of ``MASK_KINDS``) with its processor to ``folder``.

    The panoptic models' classifiers are biased to one confident class, so that their random queries pass the
    class threshold (OneFormer's then make segments and holes at the default thresholds; Mask2Former's random
    masks overlap too much for its ``overlap_mask_area_threshold`` of 0.8: pass 0.2).
    """
    import torch

    builders = {
        "sam": _tiny_sam,
        "sam_hq": _tiny_sam_hq,
        "sam2": _tiny_sam2,
        "edgetam": _tiny_edgetam,
        "mask2former": _tiny_mask2former,
        "oneformer": _tiny_oneformer,
    }
    if kind not in builders:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
    torch.manual_seed(seed)
    model, processor = builders[kind]()
    if kind in ("mask2former", "oneformer"):
        classifier = (
            model.class_predictor
            if kind == "mask2former"
            else model.model.transformer_module.decoder.class_embed
        )
        with torch.no_grad():
            classifier.bias[-1] = -10.0  # the last class is "no object"
            classifier.bias[0] = 10.0  # confident queries: their scores pass threshold
    folder = Path(folder)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


__all__ = ["MASK_KINDS", "save_tiny_mask_model"]
