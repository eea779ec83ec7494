"""One image's inputs to an evaluation, as tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class EvalSample:
    """Inputs of one image.

    Attributes:
        image_id: the image's id.
        gt: (H, W) uint8 class ids, 255 = void.
        class_ids: (K,) int64 dataset class ids of the activation maps (may be empty).
        cams: (K, H, W) float32 activation maps in [0, 1], or None for hard labels.
        saliency: (H, W) float32 saliency in [0, 1], or None.
        pred: (H, W) uint8 hard labels (255 = unlabelled), or None for activation maps.
        image: (H, W, 3) uint8 RGB picture, when the generator looks at pixels.
        gt_hash: `wsssbed.datasets.fingerprint.image_hash` of the mask read from disk (b"" for
            in-memory samples).
    """

    image_id: str
    gt: torch.Tensor
    class_ids: torch.Tensor
    cams: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    image: torch.Tensor | None = None
    gt_hash: bytes = b""

    def to(self, device: torch.device) -> EvalSample:
        """The same sample on `device` (non-blocking copies)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return EvalSample(
            self.image_id,
            move(self.gt),
            move(self.class_ids),
            move(self.cams),
            move(self.saliency),
            move(self.pred),
            move(self.image),
            self.gt_hash,
        )


def best_class(sample: EvalSample, none_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel best score and its class: the first maximal image-label class.

    Returns:
        best_score: (H, W) float32; -inf where the image has no maps.
        best_id: (H, W) int32 dataset class id; `none_class` where the image has no maps.
    """
    import torch

    height, width = sample.gt.shape
    device = sample.gt.device
    cams = sample.cams
    if cams is None or cams.shape[0] == 0:
        return (
            torch.full((height, width), float("-inf"), device=device),
            torch.full((height, width), none_class, dtype=torch.int32, device=device),
        )
    ids = sample.class_ids.tolist()
    score = cams[0]
    best_id = torch.full((height, width), ids[0], dtype=torch.int32, device=device)
    for plane, class_id in zip(cams[1:], ids[1:]):
        best_id.masked_fill_(plane > score, class_id)  # strict: the first maximal keeps ties
        score = torch.maximum(score, plane)
    return score, best_id
