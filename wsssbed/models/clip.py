"""CLIP (open_clip): class-name prompts, Grad-CAM activations and zero-shot scores.

The model is an open_clip architecture by name (`ViT-B-16`), or one described by an
open_clip config file (`--clip-config my-vit.json`), with weights from a local
state-dict file (`.bin`, `.pt`, `.safetensors`). Weights are never downloaded.

Grad-CAM follows CLIP-ES: the score of class c is its softmax probability over all
the dataset's class prompts (so other classes compete), and the map is
ReLU(sum over channels of mean-gradient x patch token) on the last transformer block's
input (its output's patch tokens never reach the pooled class token), upsampled to the
picture and divided by its maximum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wsssbed.errors import InputError
from wsssbed.io.configio import read_json
from wsssbed.io.extras import require
from wsssbed.models.checkpoint import load_weights, read_state_dict

DEFAULT_TEMPLATE = "a photo of a {}."

#: Dataset class names that read badly in a prompt.
_READABLE = {
    "aeroplane": "aeroplane",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
    "motorbike": "motorbike",
}


def prompt_name(class_name: str) -> str:
    """A class name as it should read in a prompt (`pottedplant` -> `potted plant`)."""
    return _READABLE.get(class_name, class_name.replace("_", " ").replace("-", " "))


@dataclass
class ClipModel:
    """A loaded CLIP with its tokenizer and input normalisation.

    Attributes:
        model: the open_clip model, eval mode.
        tokenizer: open_clip's tokenizer for it.
        image_size: (height, width) the vision tower takes.
        mean, std: (3,) input normalisation.
        template: prompt template with one `{}` for the class name.
    """

    model: torch.nn.Module
    tokenizer: object
    image_size: tuple[int, int]
    mean: torch.Tensor
    std: torch.Tensor
    template: str = DEFAULT_TEMPLATE
    _text_cache: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def text_features(self, names: tuple[str, ...]) -> torch.Tensor:
        """(C, D) unit-norm text embeddings of the prompts of `names`."""
        if names not in self._text_cache:
            prompts = [self.template.format(prompt_name(n)) for n in names]
            tokens = self.tokenizer(prompts).to(self.device)
            self._text_cache[names] = self.model.encode_text(tokens, normalize=True)
        return self._text_cache[names]

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) normalised model input."""
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
        x = x.unsqueeze(0).float() / 255.0
        x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False)
        return (x.clamp(0, 1) - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)

    def _logits(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        features = self.model.encode_image(x, normalize=True)
        return self.model.logit_scale.exp() * features @ self.text_features(names).T

    @torch.no_grad()
    def classify(self, crops: list[np.ndarray], names: tuple[str, ...]) -> np.ndarray:
        """Zero-shot class probabilities of picture crops.

        Args:
            crops: (h, w, 3) uint8 RGB each.
            names: the candidate class names.

        Returns:
            (N, C) float32 softmax probabilities over `names`.
        """
        if not crops:
            return np.zeros((0, len(names)), dtype=np.float32)
        x = torch.cat([self._pixels(c) for c in crops])
        return self._logits(x, names).softmax(-1).float().cpu().numpy()

    def grad_cam(self, image: np.ndarray, names: tuple[str, ...], targets: list[int]) -> np.ndarray:
        """Grad-CAM of each target class on a picture.

        Args:
            image: (H, W, 3) uint8 RGB.
            names: every class competing in the softmax.
            targets: indices into `names` to map.

        Returns:
            (len(targets), H, W) float32 in [0, 1] (each map divided by its maximum;
            all zeros when it has none).
        """
        height, width = image.shape[:2]
        if not targets:
            return np.zeros((0, height, width), dtype=np.float32)
        captured: list[torch.Tensor] = []
        last_block = self.model.visual.transformer.resblocks[-1]
        hook = last_block.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            with torch.enable_grad():
                probs = self._logits(self._pixels(image), names).softmax(-1)[0]
                tokens = captured[0]
                if not getattr(self.model.visual.transformer, "batch_first", True):
                    tokens = tokens.transpose(0, 1)
                cams = []
                for target in targets:
                    (grad,) = torch.autograd.grad(probs[target], tokens, retain_graph=True)
                    weights = grad[0, 1:].mean(dim=0)  # (C,)
                    cams.append(F.relu(tokens[0, 1:].detach() @ weights))
        finally:
            hook.remove()
        grid_h, grid_w = self.model.visual.grid_size
        stacked = torch.stack(cams).view(len(targets), 1, grid_h, grid_w)
        upsampled = F.interpolate(stacked, size=(height, width), mode="bilinear")[:, 0]
        peak = upsampled.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        return (upsampled / peak).clamp(0, 1).float().cpu().numpy()


def load_clip(
    model_name: str | None,
    weights: Path,
    config: Path | None = None,
    device: str = "cpu",
    template: str = DEFAULT_TEMPLATE,
) -> ClipModel:
    """An open_clip model with the user's weights.

    Args:
        model_name: an open_clip architecture (`ViT-B-16`); with `config`, defaults to the
            config file's stem.
        weights: a local state-dict file.
        config: an open_clip model config (JSON) for an architecture open_clip lacks.
        template: the prompt template, with one `{}`.

    Raises:
        InputError: unknown architecture, bad config, missing or mismatched weights, a
            non-ViT vision tower, or a template without `{}`.
    """
    open_clip = require("open_clip", "clip")
    if template.count("{}") != 1:
        raise InputError(f"--clip-template {template!r} needs exactly one {{}} for the class name")
    if config is not None:
        model_name = _register_config(config, model_name)
    if model_name is None:
        raise InputError("give --clip-model (an open_clip architecture) or --clip-config")
    if model_name not in open_clip.list_models():
        raise InputError(
            f"--clip-model {model_name!r} is not an open_clip architecture (for example "
            "ViT-B-16, ViT-L-14); give --clip-config for others"
        )
    state = read_state_dict(weights, f"CLIP {model_name} weights")
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # open_clip warns that it built random weights: ours follow
    try:
        model = open_clip.create_model(
            model_name, pretrained=None, pretrained_image=False, pretrained_text=False
        )
    finally:
        logger.setLevel(level)
    if not hasattr(model, "visual") or not hasattr(model.visual, "grid_size"):
        raise InputError(f"--clip-model {model_name}: Grad-CAM needs a ViT vision tower")
    if "logit_scale" in state:  # scalar in some checkpoints, (1,) in others
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    load_weights(model, state, weights, f"CLIP {model_name}")
    model = model.to(device).eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", model.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ClipModel(
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        image_size=size,
        mean=torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device),
        std=torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=device),
        template=template,
    )


def _register_config(config: Path, model_name: str | None) -> str:
    """Add an open_clip config file to open_clip's registry; returns its model name."""
    open_clip = require("open_clip", "clip")
    parsed = read_json(config, "CLIP config")
    if not isinstance(parsed, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(parsed):
        raise InputError("not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)",
                         config)  # fmt: skip
    open_clip.add_model_config(config)
    return model_name or config.stem
