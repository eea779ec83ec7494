"""Which SAM and which CLIP a generator uses: the user's options, and a recipe-carrying slot
that loads the model once per process (workers rebuild it from the recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from wsssbed.models.clip import DEFAULT_TEMPLATE, load_clip
from wsssbed.models.sam import MaskSettings, load_sam
from wsssbed.models.slot import ModelSlot


@dataclass(frozen=True)
class SamOptions:
    """Which SAM, and its automatic-mask filters (`--sam-*` options)."""

    checkpoint: Path
    model_type: str = "auto"
    masks: MaskSettings = field(default_factory=MaskSettings)

    def slot(self) -> ModelSlot:
        recipe = {"sam_checkpoint": str(self.checkpoint.resolve()), "sam_model": self.model_type}
        return ModelSlot(partial(load_sam, self.checkpoint, self.model_type), recipe)

    def mask_params(self) -> dict:
        """The automatic-mask filters, as recorded with generators that use them."""
        return {
            "points_per_side": self.masks.points_per_side,
            "pred_iou_thresh": self.masks.pred_iou_thresh,
            "stability_thresh": self.masks.stability_thresh,
        }


@dataclass(frozen=True)
class ClipOptions:
    """Which CLIP (`--clip-*` options): open_clip name or config, local weights, template."""

    weights: Path
    model: str | None = None
    config: Path | None = None
    template: str = DEFAULT_TEMPLATE

    def slot(self) -> ModelSlot:
        recipe = {
            "clip_model": self.model or (self.config.stem if self.config else ""),
            "clip_config": "" if self.config is None else str(self.config.resolve()),
            "clip_weights": str(self.weights.resolve()),
            "clip_template": self.template,
        }
        load = partial(load_clip, self.model, self.weights, self.config, template=self.template)
        return ModelSlot(load, recipe)  # load(device)
