"""SAM's automatic masks: segment-anything's own generator (`exact`), or the same algorithm
with less work (`fast`, the default).

segment-anything's `SamAutomaticMaskGenerator` decodes a grid of point prompts in batches
of 64 and, for every one of the 3 masks per point, upsamples the 256x256 logits to
1024x1024 and then to the picture before its filters drop most of them; each survivor is
then run-length encoded and decoded again. `fast` runs the same steps in an order that
skips that work:

- the decoder keeps the picture's embedding as one tensor that the first attention block
  broadcasts, instead of a copy per prompt (`decode_points`; bitwise the same logits on
  the CPU);
- the predicted-IoU filter needs no mask, so it runs on the decoder's scores and only
  the masks it keeps are upsampled;
- stability, boxes and non-maximum suppression are segment-anything's own functions;
- masks are kept bit-packed until suppression and returned as arrays, never as RLE;
- upsampling is one matrix product per axis (`Upsampler`), not a 1024x1024 intermediate;
- on CUDA the image encoder runs under bf16 autocast (`MaskSettings.precision`).

In float32 the masks, their count and their order are the exact path's up to float
rounding (a few pixels where a logit is within 1e-5 of the threshold); the tests bound
every mask's IoU against the exact path's at 0.99, for bf16 too. Both paths generate from
one crop with no small-region removal (segment-anything's defaults).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from wsssbed.errors import InputError
from wsssbed.io.extras import require

MASK_PATHS = ("fast", "exact")
PRECISIONS = ("auto", "fp32", "bf16")
_STABILITY_OFFSET = 1.0  # segment-anything's stability_score_offset
_BOX_NMS = 0.7  # segment-anything's box_nms_thresh


@dataclass(frozen=True)
class MaskSettings:
    """SamAutomaticMaskGenerator's filters (its defaults are tuned for vit_h), and the path.

    Attributes:
        points_per_side: prompts on a regular grid, this many per side.
        pred_iou_thresh: keep masks whose predicted IoU is above this (<= 0: no filter).
        stability_thresh: keep masks whose stability score is at least this (<= 0: none).
        path: `fast` (the default) or `exact` (segment-anything's generator as shipped).
        precision: the fast path's image encoder: `auto` (bf16 autocast on CUDA, float32
            elsewhere), `fp32`, or `bf16` (autocast on any device).
        points_per_batch: point prompts per decoder call (memory against calls; the
            masks do not depend on it).
    """

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    path: str = "fast"
    precision: str = "auto"
    points_per_batch: int = 64  # segment-anything's default

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise InputError("--points-per-side must be at least 1")
        if self.points_per_batch < 1:
            raise InputError("--points-per-batch must be at least 1")
        if self.path not in MASK_PATHS:
            raise InputError(f"--sam-masks {self.path!r}: use one of {', '.join(MASK_PATHS)}")
        if self.precision not in PRECISIONS:
            raise InputError(
                f"--sam-precision {self.precision!r}: use one of {', '.join(PRECISIONS)}"
            )
        if self.path == "exact" and self.precision == "bf16":
            raise InputError("--sam-precision bf16 goes with --sam-masks fast")
        for option, value in (("--pred-iou-thresh", self.pred_iou_thresh),
                              ("--stability-thresh", self.stability_thresh)):  # fmt: skip
            if value > 1:  # both scores are fractions: a mask never passes a value above 1
                raise InputError(
                    f"{option} {value:g} is above 1, but SAM's scores are fractions, so no "
                    f"mask would pass; a percentage? write {value / 100:g}"
                )

    def encoder_autocast(self, device: torch.device) -> AbstractContextManager:
        """The context the fast path's image encoder runs in on `device`."""
        if self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda"):
            return torch.autocast(device.type, torch.bfloat16)
        return nullcontext()


@torch.no_grad()
def automatic_masks(
    sam: torch.nn.Module, image: np.ndarray, settings: MaskSettings
) -> list[tuple[np.ndarray, float]]:
    """SAM's automatic masks of a picture, largest first.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (mask (H, W) bool, predicted IoU) pairs, by decreasing area (ties in the order
        suppression keeps them: by decreasing predicted IoU); none empty.
    """
    found = (
        exact_masks(sam, image, settings)
        if settings.path == "exact"
        else fast_masks(sam, image, settings)
    )
    order = sorted(range(len(found)), key=lambda i: -int(found[i][0].sum()))
    return [found[i] for i in order if found[i][0].any()]


def exact_masks(
    sam: torch.nn.Module, image: np.ndarray, settings: MaskSettings
) -> list[tuple[np.ndarray, float]]:
    """segment-anything's `SamAutomaticMaskGenerator`, in the order it returns masks."""
    generator = require("segment_anything", "sam").SamAutomaticMaskGenerator(
        sam,
        points_per_side=settings.points_per_side,
        points_per_batch=settings.points_per_batch,
        pred_iou_thresh=settings.pred_iou_thresh,
        stability_score_thresh=settings.stability_thresh,
        stability_score_offset=_STABILITY_OFFSET,
        box_nms_thresh=_BOX_NMS,
    )
    return [(m["segmentation"].astype(bool), float(m["predicted_iou"]))
            for m in generator.generate(image)]  # fmt: skip


def fast_masks(
    sam: torch.nn.Module, image: np.ndarray, settings: MaskSettings
) -> list[tuple[np.ndarray, float]]:
    """The exact path's masks with the work its filters make useless left out (see the
    module's docstring), in the order suppression keeps them."""
    nms = require("torchvision", "sam").ops.batched_nms
    mask_to_box = require("segment_anything", "sam").utils.amg.batched_mask_to_box
    width = image.shape[1]
    scores, boxes, packed = [], [], []
    for masks, iou in candidate_masks(sam, image, settings):
        scores.append(iou)
        boxes.append(mask_to_box(masks))
        packed.append(np.packbits(masks.cpu().numpy(), axis=-1))
    score = torch.cat(scores)
    if not score.numel():
        return []
    kept = nms(torch.cat(boxes).float(), score, torch.zeros_like(score), iou_threshold=_BOX_NMS)
    flat = np.concatenate(packed)
    return [(np.unpackbits(flat[i], axis=-1, count=width).astype(bool), float(score[i]))
            for i in kept.cpu().tolist()]  # fmt: skip


@torch.no_grad()
def candidate_masks(
    sam: torch.nn.Module, image: np.ndarray, settings: MaskSettings
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The masks that pass the predicted-IoU and stability filters, before suppression:
    (n, H, W) bool masks and (n,) predicted IoU per decoder call, each point's 3 masks in
    turn (segment-anything's `_process_batch` without the run-length encoding)."""
    segment_anything = require("segment_anything", "sam")
    amg = segment_anything.utils.amg
    predictor = segment_anything.SamPredictor(sam)
    with settings.encoder_autocast(predictor.device):
        predictor.set_image(image)
    predictor.features = predictor.features.float()
    height, width = image.shape[:2]
    points = amg.build_point_grid(settings.points_per_side) * np.array([[width, height]])
    upsample = Upsampler(sam, predictor.input_size, (height, width))
    for logits, iou in _decoded(predictor, points, settings.points_per_batch):
        if settings.pred_iou_thresh > 0:
            keep = iou > settings.pred_iou_thresh
            logits, iou = logits[keep], iou[keep]
        masks = upsample(logits)
        if settings.stability_thresh > 0:
            stability = amg.calculate_stability_score(masks, sam.mask_threshold,
                                                      _STABILITY_OFFSET)  # fmt: skip
            keep = stability >= settings.stability_thresh
            masks, iou = masks[keep], iou[keep]
        yield masks > sam.mask_threshold, iou


class Upsampler:
    """SAM's `postprocess_masks` (bilinear to the encoder's square, crop to the resized
    picture, bilinear to the picture) as one linear map per axis: logits (N, h, w) ->
    My @ logits @ Mx^T. The matrices are `F.interpolate` applied to identity matrices, so
    the weights are torch's own; the result differs from the three steps by float rounding
    only, without the (N, 1024, 1024) intermediate."""

    def __init__(self, sam: torch.nn.Module, resized: tuple[int, int], size: tuple[int, int]):
        low, square = sam.prompt_encoder.mask_input_size, sam.image_encoder.img_size
        self.rows, self.cols = (
            _axis_map(n, square, cut, out).to(sam.device) for n, cut, out in zip(low, resized, size)
        )

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, h, w) low-resolution logits -> (N, H, W)."""
        return self.rows @ (logits @ self.cols.T)


def _axis_map(low: int, square: int, cut: int, size: int) -> torch.Tensor:
    """(size, low) float32: bilinear `low` -> `square`, keep the first `cut`, bilinear
    `cut` -> `size`, composed in float64."""
    first = _interpolation_matrix(low, square)[:cut]
    return (_interpolation_matrix(cut, size) @ first).float()


def _interpolation_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) float64: torch's 1-D bilinear resampling (align_corners=False)."""
    unit = torch.eye(size_in, dtype=torch.float64)[:, None, :, None]
    out = torch.nn.functional.interpolate(unit, (size_out, 1), mode="bilinear", align_corners=False)
    return out[:, 0, :, 0].T


def _decoded(
    predictor, points: np.ndarray, batch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(N, h, w) low-resolution logits and (N,) predicted IoU, `batch` point prompts per
    decoder call, each point's 3 masks in turn."""
    sam = predictor.model
    coords = predictor.transform.apply_coords(points, predictor.original_size)
    for start in range(0, len(coords), batch):
        chunk = torch.as_tensor(coords[start : start + batch], device=predictor.device)
        labels = torch.ones(chunk.shape[0], dtype=torch.int, device=predictor.device)
        sparse, dense = sam.prompt_encoder(points=(chunk[:, None, :], labels[:, None]),
                                           boxes=None, masks=None)  # fmt: skip
        pe = sam.prompt_encoder.get_dense_pe()
        logits, iou = decode_points(sam.mask_decoder, predictor.features, pe, sparse, dense[:1])
        yield logits.flatten(0, 1), iou.flatten(0, 1)


def decode_points(
    decoder: torch.nn.Module,
    image: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's `MaskDecoder` with multimask output, for prompts that share one picture and
    no mask prompt, without copying the picture's embedding once per prompt.

    segment-anything repeats the (C, h, w) embedding and its positional encoding B times
    before the two-way transformer. Until the first image-to-token attention adds each
    prompt's own update, those copies are equal, so here they stay one tensor that the
    attention's matrix products broadcast: the first block projects the picture's keys,
    values and queries once instead of B times. The arithmetic per prompt is the same.

    Args:
        image: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) its positional encoding.
        sparse: (B, n, C) prompt tokens.
        dense: (1, C, h, w) the no-mask embedding (equal for every prompt).

    Returns:
        (B, 3, 4h, 4w) mask logits and (B, 3) predicted IoU.
    """
    count = sparse.shape[0]
    output = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
    tokens = torch.cat([output.unsqueeze(0).expand(count, -1, -1), sparse], dim=1)
    hidden, src = decoder.transformer(image + dense, image_pe, tokens)
    _, channels, height, width = image.shape
    src = src.transpose(1, 2).reshape(count, channels, height, width)
    upscaled = decoder.output_upscaling(src)
    hyper = torch.stack([mlp(hidden[:, 1 + i]) for i, mlp in
                         enumerate(decoder.output_hypernetworks_mlps)], dim=1)  # fmt: skip
    masks = (hyper @ upscaled.flatten(2)).view(count, -1, *upscaled.shape[2:])
    iou = decoder.iou_prediction_head(hidden[:, 0])
    return masks[:, 1:], iou[:, 1:]
