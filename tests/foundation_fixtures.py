"""Fixtures for the foundation-model generators: small, randomly initialised SAM and CLIP
models built from the libraries' own classes and saved as the checkpoint files a user
would pass (nothing is downloaded), and a VOC-layout copy of the real VOC pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_SAM = dict(
    embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, global_attn_indexes=(1,),
    window_size=4, image_size=256, patch_size=16, prompt_dim=32, mask_in_chans=8,
    decoder_depth=1, decoder_mlp_dim=64, iou_head_depth=2, iou_head_hidden_dim=32,
)  # fmt: skip

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 16,
                   "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 2},
}  # fmt: skip


def save_tiny_sam(folder: Path, seed: int = 0) -> Path:
    """A tiny SAM (segment_anything classes, random weights) saved as a state dict."""
    from wsssbed.models.sam import SamArchitecture, build_sam

    torch.manual_seed(seed)
    path = folder / "tiny_sam.pth"
    torch.save(build_sam(SamArchitecture(**TINY_SAM)).state_dict(), path)
    return path


def calibrate_sam(sam: torch.nn.Module, logit_scale: float, iou_shift: float) -> torch.nn.Module:
    """A random SAM with outputs in a trained SAM's ranges, so that the automatic-mask
    filters keep some masks and drop others: mask logits scaled from tenths to tens
    (stability scores spread over [0, 1]) and predicted IoU shifted towards 0.88."""
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(logit_scale)
            mlp.layers[-1].bias.mul_(logit_scale)
        sam.mask_decoder.iou_prediction_head.layers[-1].bias.add_(iou_shift)
    return sam


def save_tiny_clip(
    folder: Path, seed: int = 0, name: str = "wsssbed-tiny-vit"
) -> tuple[Path, Path]:
    """A tiny open_clip ViT (random weights): (config JSON, weights file)."""
    import open_clip

    config = folder / f"{name}.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights = folder / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    return config, weights


def voc_class_ids(path: Path) -> np.ndarray:
    """(H, W) uint8 VOC class ids of a colour-coded label picture (VOC's palette; other
    colours, the void border included, become 255)."""
    from wsssbed.datasets import get_dataset

    palette = np.array(get_dataset("voc2012").palette()[: 256 * 3]).reshape(256, 3)
    colours = np.array(Image.open(path).convert("RGB"))
    labels = np.full(colours.shape[:2], 255, dtype=np.uint8)
    for class_id in range(21):
        labels[(colours == palette[class_id]).all(-1)] = class_id
    return labels


def voc_figures_layout(figures: Path, root: Path, count: int) -> list[str]:
    """Copy `count` of ../shared/data/voc2012-figures into a VOC layout under `root`
    (JPEGImages, SegmentationClass with the colour-coded ground truth mapped back to class
    ids, a `train` split); returns the image ids."""
    voc = root / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    ids = sorted(p.stem for p in figures.glob("*.png") if not p.stem.endswith(("_gt", "_pred")))
    ids = ids[:count]
    for image_id in ids:
        picture = Image.open(figures / f"{image_id}.png").convert("RGB")
        picture.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        gt = voc_class_ids(figures / f"{image_id}_gt.png")
        Image.fromarray(gt).save(voc / "SegmentationClass" / f"{image_id}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return ids


#: Words of the tiny detector's vocabulary: BERT's specials, the prompt's `.`, and the
#: VOC class names as they read in a prompt.
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "aeroplane", "bicycle", "bird",
    "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining", "table", "dog",
    "horse", "motorbike", "person", "potted", "plant", "sheep", "sofa", "train", "tv",
    "monitor", "background",
]  # fmt: skip


def save_tiny_grounding_dino(folder: Path, seed: int = 0, max_text_len: int = 32) -> Path:
    """A tiny Grounding DINO (transformers' classes, random weights) with its processor,
    saved as `save_pretrained` writes them; returns the folder."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(TINY_VOCAB)})
    images = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    backbone = SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
        image_size=64, out_features=["stage2", "stage3", "stage4"],
    )  # fmt: skip
    text = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
        decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, num_queries=10, num_feature_levels=3,
        encoder_n_points=2, decoder_n_points=2, max_text_len=max_text_len,
        use_timm_backbone=False, use_pretrained_backbone=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(images, tokenizer).save_pretrained(folder)
    return folder


def save_tiny_models(folder: Path) -> dict[str, Path]:
    """A tiny Grounding DINO folder, SAM checkpoint and CLIP config + weights below
    `folder` (`detector`, `sam`, `clip_config`, `clip`)."""
    config, weights = save_tiny_clip(folder)
    return {
        "detector": save_tiny_grounding_dino(folder / "grounding-dino"),
        "sam": save_tiny_sam(folder),
        "clip_config": config,
        "clip": weights,
    }
