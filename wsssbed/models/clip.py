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
from wsssbed.models.checkpoint import MAX_HEADS, build_checked, offline, read_state_dict

DEFAULT_TEMPLATE = "a photo of a {}."
#: Largest vision input (pixels a side) and patch grid, and longest text context, a
#: config may claim (the published CLIPs use at most 448, 32 and 77); attention memory
#: grows with the square of the tokens, which the weights' shapes do not bound.
MAX_IMAGE_SIZE = 1024
MAX_GRID = 64
MAX_CONTEXT = 512

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
    if ":" in model_name or model_name not in open_clip.list_models():
        raise InputError(
            f"--clip-model {model_name!r} is not an open_clip architecture (for example "
            "ViT-B-16, ViT-L-14); give --clip-config for others"
        )
    state = read_state_dict(weights, f"CLIP {model_name} weights")
    if "logit_scale" in state and state["logit_scale"].numel() == 1:  # (1,) in some files
        state["logit_scale"] = state["logit_scale"].reshape(())
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # open_clip warns that it built random weights: ours follow
    try:
        with offline():
            model = build_checked(
                lambda device: open_clip.create_model(
                    model_name,
                    pretrained=None,
                    pretrained_image=False,
                    pretrained_text=False,
                    device=device,
                ),
                state,
                weights,
                f"CLIP {model_name}",
            )
            tokenizer = _tokenizer(open_clip, model_name)
    finally:
        logger.setLevel(level)
    if not hasattr(model, "visual") or not hasattr(model.visual, "grid_size"):
        raise InputError(f"--clip-model {model_name}: Grad-CAM needs a ViT vision tower")
    model = model.to(device).eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", model.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ClipModel(
        model=model,
        tokenizer=tokenizer,
        image_size=size,
        mean=torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device),
        std=torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=device),
        template=template,
    )


def _tokenizer(open_clip, model_name: str):
    """open_clip's tokenizer for `model_name`, offline (a Hugging Face tokenizer it would
    have to download is refused)."""
    try:
        return open_clip.get_tokenizer(model_name)
    except Exception as exc:  # offline hub errors come in many classes
        raise InputError(
            f"--clip-model {model_name}: its tokenizer is not part of open_clip and is never "
            f"downloaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def _register_config(config: Path, model_name: str | None) -> str:
    """Add an open_clip config file to open_clip's registry; returns its model name.

    Raises:
        InputError: not an open_clip config; towers from timm or Hugging Face (they would
            be downloaded); more than `MAX_HEADS` heads, a context over `MAX_CONTEXT`
            tokens, or an input over `MAX_IMAGE_SIZE` pixels or `MAX_GRID` patches a side.
    """
    open_clip = require("open_clip", "clip")
    parsed = read_json(config, "CLIP config")
    if not isinstance(parsed, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(parsed):
        raise InputError("not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)",
                         config)  # fmt: skip
    vision, text = parsed["vision_cfg"], parsed["text_cfg"]
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise InputError("vision_cfg and text_cfg must be objects", config)
    borrowed = sorted(k for cfg in (vision, text) for k in cfg if k.startswith(("timm_", "hf_")))
    if borrowed:
        raise InputError(
            f"{borrowed[0]}: towers from timm or Hugging Face are not supported (they are "
            "fetched by name); use open_clip's own ViT and text transformer",
            config,
        )
    _check_dimensions(vision, text, config)
    open_clip.add_model_config(config)
    return model_name or config.stem


def _check_dimensions(vision: dict, text: dict, config: Path) -> None:
    """Refuse the dimensions that cost memory without showing in the weights' shapes."""

    def number(table: dict, key: str, default: int) -> int:
        value = table.get(key, default)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                 for v in values):  # fmt: skip
            raise InputError(f"{key} must be a positive integer, got {value!r:.40}", config)
        return max(values)

    image, patch = number(vision, "image_size", 224), number(vision, "patch_size", 16)
    vision_heads = number(vision, "width", 768) // number(vision, "head_width", 64)
    limits = (
        (vision_heads, MAX_HEADS, "vision heads (width / head_width)"),
        (number(text, "heads", 8), MAX_HEADS, "text heads"),
        (number(text, "context_length", 77), MAX_CONTEXT, "context_length"),
        (image, MAX_IMAGE_SIZE, "image_size"),
        (image // patch, MAX_GRID, "patches a side (image_size / patch_size)"),
    )
    for value, limit, name in limits:
        if value > limit:
            raise InputError(f"{name} is {value}; at most {limit} are supported", config)
