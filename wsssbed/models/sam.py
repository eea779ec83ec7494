"""Segment Anything: build the model a checkpoint holds, and run it on one picture.

A SAM checkpoint is a plain state dict. Its tensor shapes fix the architecture (ViT
width and depth, which blocks attend globally, the window size, the prompt width, the
decoder's depth), so `load_sam` reads the architecture off the checkpoint and builds it
from segment-anything's own classes. `--sam-model vit_b|vit_l|vit_h` then checks that
the file is that model; `auto` accepts any SAM-shaped checkpoint (the tests use a tiny,
randomly initialised one). Weights are never downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from wsssbed.errors import InputError
from wsssbed.io.extras import require
from wsssbed.models.checkpoint import MAX_HEADS, build_checked, read_state_dict

#: The published SAM image encoders: model type -> (ViT width, depth).
SAM_TYPES = {"vit_b": (768, 12), "vit_l": (1024, 24), "vit_h": (1280, 32)}
#: Largest input side (SAM's own 1024 pixels; pictures are resized to it) and patch grid:
#: the encoder's attention costs grow with their fourth power, not with the file.
MAX_IMAGE_SIZE = 1024
MAX_GRID = 64
SAM_MODEL_CHOICES = ("auto", *SAM_TYPES)
_DECODER_HEADS = 8  # SAM's two-way transformer; head count leaves no trace in the shapes


@dataclass(frozen=True)
class SamArchitecture:
    """Everything needed to build a SAM (see segment_anything.build_sam)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    global_attn_indexes: tuple[int, ...]
    window_size: int
    image_size: int
    patch_size: int
    prompt_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    iou_head_depth: int
    iou_head_hidden_dim: int

    @property
    def model_type(self) -> str:
        """`vit_b`, `vit_l`, `vit_h`, or `custom`."""
        for name, size in SAM_TYPES.items():
            if size == (self.embed_dim, self.depth):
                return name
        return "custom"


def infer_architecture(state: dict[str, torch.Tensor], path: Path) -> SamArchitecture:
    """The architecture a SAM state dict was saved from.

    Raises:
        InputError: the tensors are not those of a SAM, or describe an input larger than
            `MAX_IMAGE_SIZE` (or `MAX_GRID` patches a side) or more than `MAX_HEADS` heads.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise InputError(f"not a Segment Anything checkpoint (no tensor {key})", path)
        return tuple(state[key].shape)

    def count(prefix: str) -> int:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({int(m.group(1)) for k in state if (m := pattern.match(k))})

    try:
        return _infer(shape, count, path)
    except (ValueError, IndexError) as exc:  # tensors of the right names but other ranks
        raise InputError(f"not a Segment Anything checkpoint: {exc}", path) from None


def _infer(shape, count, path: Path) -> SamArchitecture:
    embed_dim, _, patch_size, _ = shape("image_encoder.patch_embed.proj.weight")
    grid = shape("image_encoder.pos_embed")[1]
    depth = count("image_encoder.blocks.")
    if depth == 0:
        raise InputError("not a Segment Anything checkpoint (no encoder blocks)", path)
    spans = [shape(f"image_encoder.blocks.{i}.attn.rel_pos_h") for i in range(depth)]
    sizes = [(rows + 1) // 2 for rows, _ in spans]
    windowed = [s for s in sizes if s != grid]
    if min(embed_dim, patch_size, grid, spans[0][1]) <= 0:
        raise InputError("not a Segment Anything checkpoint (empty encoder tensors)", path)
    heads = embed_dim // spans[0][1]
    if grid * patch_size > MAX_IMAGE_SIZE or grid > MAX_GRID or heads > MAX_HEADS:
        raise InputError(
            f"describes a {grid * patch_size}-pixel input in a {grid}x{grid} patch grid with "
            f"{heads} heads; SAM reads at most {MAX_IMAGE_SIZE} pixels, {MAX_GRID} patches a "
            f"side and {MAX_HEADS} heads",
            path,
        )
    return SamArchitecture(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=shape("image_encoder.blocks.0.mlp.lin1.weight")[0] / embed_dim,
        global_attn_indexes=tuple(i for i, s in enumerate(sizes) if s == grid),
        window_size=windowed[0] if windowed else 0,
        image_size=grid * patch_size,
        patch_size=patch_size,
        prompt_dim=shape("image_encoder.neck.0.weight")[0],
        mask_in_chans=shape("prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=count("mask_decoder.transformer.layers."),
        decoder_mlp_dim=shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        iou_head_depth=count("mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )


def build_sam(arch: SamArchitecture) -> torch.nn.Module:
    """A randomly initialised SAM of `arch`, from segment-anything's classes, in eval mode."""
    modeling = require("segment_anything", "sam").modeling
    grid = arch.image_size // arch.patch_size
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=arch.depth,
            embed_dim=arch.embed_dim,
            img_size=arch.image_size,
            mlp_ratio=arch.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_dim,
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=arch.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=_DECODER_HEADS,
            ),
            transformer_dim=arch.prompt_dim,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_sam(checkpoint: Path, model_type: str = "auto", device: str = "cpu") -> torch.nn.Module:
    """The SAM saved in `checkpoint`, on `device`, in eval mode.

    Args:
        checkpoint: a SAM state dict (`sam_vit_b_01ec64.pth` and the like).
        model_type: `auto`, or `vit_b` / `vit_l` / `vit_h` to insist on that model.

    Raises:
        InputError: missing or unreadable file, not a SAM, or not `model_type`.
    """
    if model_type not in SAM_MODEL_CHOICES:
        raise InputError(f"--sam-model {model_type!r}: use one of {', '.join(SAM_MODEL_CHOICES)}")
    state = read_state_dict(checkpoint, "a Segment Anything checkpoint")
    arch = infer_architecture(state, checkpoint)
    if model_type != "auto" and arch.model_type != model_type:
        raise InputError(
            f"holds a SAM {arch.model_type} (ViT width {arch.embed_dim}, depth {arch.depth}), "
            f"not the {model_type} asked for with --sam-model",
            checkpoint,
        )
    sam = build_checked(
        lambda _device: build_sam(arch), state, checkpoint, f"SAM {arch.model_type}"
    )
    return sam.eval().to(device)


@torch.no_grad()
def box_masks(sam: torch.nn.Module, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """SAM's mask for each box prompt.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: (N, 4) float pixel boxes `x0, y0, x1, y1`.

    Returns:
        (N, H, W) bool masks (one per box, SAM's single-mask output).
    """
    height, width = image.shape[:2]
    if len(boxes) == 0:
        return np.zeros((0, height, width), dtype=bool)
    predictor = require("segment_anything", "sam").SamPredictor(sam)
    predictor.set_image(image)
    prompts = torch.as_tensor(boxes, dtype=torch.float32, device=predictor.device)
    prompts = predictor.transform.apply_boxes_torch(prompts, (height, width))
    masks, _, _ = predictor.predict_torch(None, None, boxes=prompts, multimask_output=False)
    return masks[:, 0].cpu().numpy()
