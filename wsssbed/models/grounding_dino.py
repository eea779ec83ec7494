"""Grounding DINO boxes from class names (Hugging Face transformers), from local weights.

The model folder is what `save_pretrained` writes for `GroundingDinoForObjectDetection`
and its `GroundingDinoProcessor` (config, safetensors, preprocessor and tokenizer files);
nothing is downloaded. The prompt is the class names as they read (`potted plant`),
lower-case, each followed by ` .` (the authors' format); names that do not fit the text
encoder in one prompt are split over several, each a forward pass.

A query is a box when its best token probability exceeds the box threshold (the box's
score, as in transformers' `post_process_grounded_object_detection`). Its class is the
name whose tokens hold its best probability among the tokens above the text threshold;
none above it: no class (such a box is dropped, unless CLIP names every box). Its phrase
is the tokens above the text threshold, as the authors print it. Thresholds default to
the authors' demo values: box 0.35, text 0.25 (IDEA-Research/GroundingDINO, README).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wsssbed.errors import InputError
from wsssbed.io.configio import read_json
from wsssbed.models.checkpoint import (
    MAX_HEADS,
    check_folder,
    check_shape_counts,
    inside,
    offline,
)
from wsssbed.models.clip import prompt_name

BOX_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.25
MODEL_TYPE = "grounding-dino"
#: Largest side the image processor may resize a picture to (the authors' 1333).
MAX_RESIZE = 1333


@dataclass(frozen=True)
class Detection:
    """One grounded box.

    Attributes:
        box: pixel corners (x0, y0, x1, y1), clipped to the picture.
        name: index into the prompted names of its class; None: no token of a name
            passed the text threshold.
        phrase: the tokens above the text threshold, decoded.
        score: its best token probability.
    """

    box: tuple[float, float, float, float]
    name: int | None
    phrase: str
    score: float


@dataclass(frozen=True)
class Prompt:
    """One text prompt and which name each of its tokens belongs to.

    Attributes:
        text: `cat . potted plant .`
        names: indices of the prompted names it holds.
        owner: (T,) per token, the position in `names` of its name, -1 for the rest
            (`[CLS]`, `.`, `[SEP]`).
    """

    text: str
    names: list[int]
    owner: np.ndarray


def prompt_text(names: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """`cat . dog .` and each name's character span in it."""
    parts, spans, at = [], [], 0
    for name in names:
        readable = prompt_name(name).lower()
        spans.append((at, at + len(readable)))
        parts.append(f"{readable} .")
        at += len(readable) + 3
    return " ".join(parts), spans


@dataclass
class Detector:
    """A loaded Grounding DINO and its processor on one device."""

    model: object
    processor: object
    device: torch.device
    _prompts: dict[tuple[str, ...], list[Prompt]] = field(default_factory=dict, repr=False)

    @property
    def max_tokens(self) -> int:
        return int(self.model.config.max_text_len)

    def _tokens(self, text: str) -> dict:
        return self.processor.tokenizer(text, return_offsets_mapping=True)

    def check_names(self, names: list[str], where: Path | None = None) -> None:
        """Refuse class names the tokenizer cannot spell or that would not fit the text
        encoder even alone, before any image is done."""
        tokenizer = self.processor.tokenizer
        for name in names:
            readable = prompt_name(name).lower()
            tokens = tokenizer.tokenize(readable)
            if not tokens or tokenizer.unk_token in tokens:
                raise InputError(
                    f"class name {name!r} is unknown to the detector's tokenizer "
                    f"(it reads {tokens})",
                    where,
                )
            length = len(self._tokens(prompt_text([name])[0])["input_ids"])
            if length > self.max_tokens:
                raise InputError(
                    f"class name {name!r} is {length} tokens with its prompt; the "
                    f"detector reads at most {self.max_tokens}, so it would be cut",
                    where,
                )

    def prompts(self, names: list[str]) -> list[Prompt]:
        """The names in order, packed into as few prompts as fit the text encoder (worked
        out once per list of names)."""
        key = tuple(names)
        if key not in self._prompts:
            self._prompts[key] = self._pack(names)
        return self._prompts[key]

    def _pack(self, names: list[str]) -> list[Prompt]:
        found, start = [], 0
        while start < len(names):
            stop = start + 1
            while stop < len(names) and self._fits(names[start : stop + 1]):
                stop += 1
            found.append(self._prompt(names, list(range(start, stop))))
            start = stop
        return found

    def _fits(self, names: list[str]) -> bool:
        return len(self._tokens(prompt_text(names)[0])["input_ids"]) <= self.max_tokens

    def _prompt(self, names: list[str], indices: list[int]) -> Prompt:
        text, spans = prompt_text([names[i] for i in indices])
        offsets = self._tokens(text)["offset_mapping"]
        owner = np.full(len(offsets), -1, dtype=np.int64)
        for token, (begin, end) in enumerate(offsets):
            for position, (low, high) in enumerate(spans):
                if end > begin and low <= begin and end <= high:
                    owner[token] = position
        return Prompt(text, indices, owner)

    @torch.no_grad()
    def detect(
        self, image: np.ndarray, names: list[str], box_threshold: float, text_threshold: float
    ) -> list[Detection]:
        """Boxes of `names` in an (H, W, 3) uint8 RGB picture, prompt by prompt."""
        from PIL import Image

        picture = Image.fromarray(image)
        found = []
        for prompt in self.prompts(names) if names else []:
            inputs = self.processor(images=picture, text=prompt.text, return_tensors="pt")
            outputs = self.model(**inputs.to(self.device))
            found += self._decode(outputs, inputs["input_ids"][0], prompt, image.shape[:2],
                                  box_threshold, text_threshold)  # fmt: skip
        return found

    def _decode(
        self, outputs, input_ids: torch.Tensor, prompt: Prompt, size: tuple[int, int],
        box_threshold: float, text_threshold: float,
    ) -> list[Detection]:  # fmt: skip
        height, width = size
        probs = outputs.logits[0].sigmoid().float().cpu()  # (Q, max_text_len)
        scores = probs.max(-1).values
        corners = outputs.pred_boxes[0].float().cpu()  # (Q, 4) centre x, y, w, h in [0, 1]
        tokens = len(prompt.owner)
        detections = []
        for query in torch.nonzero(scores > box_threshold).flatten().tolist():
            cx, cy, w, h = corners[query].tolist()
            x0, y0 = max((cx - w / 2) * width, 0.0), max((cy - h / 2) * height, 0.0)
            x1, y1 = min((cx + w / 2) * width, float(width)), min((cy + h / 2) * height,
                                                                 float(height))  # fmt: skip
            if not (x0 < x1 and y0 < y1):
                continue
            above = probs[query, :tokens] > text_threshold
            above[0] = above[tokens - 1] = False  # [CLS] and [SEP] never name anything
            phrase = self.processor.tokenizer.decode(input_ids[:tokens][above].tolist())
            named = above.numpy() & (prompt.owner >= 0)
            name = None
            if named.any():
                best = int(np.flatnonzero(named)[probs[query, :tokens].numpy()[named].argmax()])
                name = prompt.names[int(prompt.owner[best])]
            detections.append(Detection((x0, y0, x1, y1), name, phrase, float(scores[query])))
        return detections


def load_detector(folder: Path, device: str = "cpu") -> Detector:
    """Grounding DINO and its processor from a local `save_pretrained` folder, offline.

    The folder is data: before anything is built, every file it holds must stay inside
    it (a shard index names plain files of the folder; no link leads out), the config
    may not name a backbone to fetch (`use_timm_backbone`, `use_pretrained_backbone`,
    `backbone`) nor remote code (`auto_map`), may claim at most `MAX_HEADS` attention
    heads and a `max_text_len` no longer than its text encoder's position embeddings,
    the processor must resize pictures to at most `MAX_RESIZE` pixels a side, and the
    model the config describes (built on the `meta` device) must have exactly the
    tensor shapes of the weights. transformers' loading report is then checked: any
    missing, unexpected or reshaped tensor is refused.

    Raises:
        InputError: naming the folder and what does not fit.
    """
    from wsssbed.io.extras import require

    transformers = require("transformers", "detector")
    if not (folder / "config.json").exists():
        raise InputError("no config.json: give the folder that transformers' save_pretrained "
                         "wrote for Grounding DINO", folder)  # fmt: skip
    check_folder(folder)
    found = read_json(inside(folder, "config.json", "the folder"), "transformers config")
    model_type = found.get("model_type") if isinstance(found, dict) else None
    if model_type != MODEL_TYPE:
        raise InputError(
            f"these are weights of another model (config.json says {model_type!r}, "
            f"not {MODEL_TYPE!r})",
            folder,
        )
    for needed, note in (
        (("processor_config.json", "preprocessor_config.json"), "the image processor"),
        (("tokenizer.json", "vocab.txt"), "the tokenizer"),
        (("model.safetensors", "model.safetensors.index.json"),
         "the weights, read from safetensors only, never from pickles"),
    ):  # fmt: skip
        if not any((folder / name).is_file() for name in needed):
            raise InputError(
                f"no {' or '.join(needed)} ({note}), as transformers' save_pretrained writes it",
                folder,
            )
    _check_config(found, folder)
    shapes = _weight_shapes(folder)
    with offline(), _without_bars(transformers):
        try:
            config = transformers.GroundingDinoConfig.from_dict(found)
            with torch.device("meta"):
                skeleton = transformers.GroundingDinoForObjectDetection(config)
        except Exception as exc:  # a stranger's config: any failure to build it is its fault
            raise InputError(f"config.json does not describe a Grounding DINO: {exc}",
                             folder) from exc  # fmt: skip
        check_shape_counts(skeleton, shapes, folder, "this Grounding DINO config")
        try:
            processor = transformers.GroundingDinoProcessor.from_pretrained(
                folder, local_files_only=True
            )
        except Exception as exc:  # a stranger's files: any failure to read them is theirs
            raise InputError(f"cannot load the processor: {exc}", folder) from exc
        _check_resize(processor.image_processor, folder)
        _check_normalisation(processor.image_processor, folder)
        _check_tokenizer(processor.tokenizer, folder)
        try:
            model, report = transformers.GroundingDinoForObjectDetection.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, output_loading_info=True
            )
        except Exception as exc:  # a stranger's file: any failure to read it is its fault
            raise InputError(f"cannot load the Grounding DINO weights: {exc}", folder) from exc
    _check_report(report, folder)
    return Detector(model.eval().to(device), processor, torch.device(device))


def _check_config(found: dict, folder: Path) -> None:
    """Refuse config settings that fetch things or cost memory the weights do not show."""
    for key in ("use_timm_backbone", "use_pretrained_backbone"):
        if found.get(key):
            raise InputError(f"config.json sets {key}: a backbone fetched from the network; "
                             "wsssbed reads the folder's own weights only", folder)  # fmt: skip
    if found.get("backbone") is not None or found.get("backbone_kwargs"):
        raise InputError("config.json names a backbone to fetch (`backbone`); give the "
                         "backbone_config save_pretrained writes", folder)  # fmt: skip
    heads: list[int] = []
    _walk(found, heads, folder)
    if heads and max(heads) > MAX_HEADS:
        raise InputError(f"config.json claims {max(heads)} attention heads; at most "
                         f"{MAX_HEADS} are supported", folder)  # fmt: skip
    text = found.get("text_config") or {}
    positions = text.get("max_position_embeddings", 512) if isinstance(text, dict) else None
    length = found.get("max_text_len", 256)
    if not _positive(length) or not _positive(positions) or length > positions:
        raise InputError(
            f"config.json max_text_len {length!r:.30} exceeds what its text encoder reads "
            f"(max_position_embeddings {positions!r:.30})",
            folder,
        )


def _walk(table: object, heads: list[int], folder: Path) -> None:
    """Collect head counts below `table` and refuse remote code (`auto_map`) anywhere."""
    if isinstance(table, dict):
        if "auto_map" in table:
            raise InputError("config.json asks for remote code (`auto_map`)", folder)
        for key, value in table.items():
            if "heads" in key:
                values = value if isinstance(value, list) else [value]
                heads += [v for v in values if _positive(v)]
            _walk(value, heads, folder)
    elif isinstance(table, list):
        for value in table:
            _walk(value, heads, folder)


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the folder's safetensors files, from their headers
    (a shard index may name only files of the folder)."""
    from safetensors import SafetensorError, safe_open

    files = ["model.safetensors"]
    if not (folder / "model.safetensors").exists():
        index = read_json(inside(folder, "model.safetensors.index.json", "the folder"),
                          "shard index")  # fmt: skip
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) for v in weight_map.values()
        ):
            raise InputError("model.safetensors.index.json has no weight_map of file names",
                             folder)  # fmt: skip
        files = sorted(set(weight_map.values()))
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        path = inside(folder, name, "model.safetensors.index.json")
        try:
            with safe_open(str(path), "pt") as handle:
                names = handle.keys()  # a safe_open handle is not iterable
                shapes.update({k: tuple(handle.get_slice(k).get_shape()) for k in names})
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"cannot load the Grounding DINO weights: {exc}", path) from exc
    return shapes


def _check_resize(image_processor, folder: Path) -> None:
    """Refuse a processor that would not resize pictures to at most `MAX_RESIZE` a side."""
    size = image_processor.size
    read = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    values = {k: read(k) for k in ("shortest_edge", "longest_edge", "height", "width",
                                   "max_height", "max_width")}  # fmt: skip
    bounded = (
        values["longest_edge"]
        or (values["height"] and values["width"])
        or (values["max_height"] and values["max_width"])
    )
    pad = getattr(image_processor, "pad_size", None)
    padded = [getattr(pad, k, None) or (pad.get(k) if isinstance(pad, dict) else None)
              for k in ("height", "width")] if pad else []  # fmt: skip
    sides = [v for v in [*values.values(), *padded] if v is not None]
    if (
        not getattr(image_processor, "do_resize", False)
        or not bounded
        or any(not _positive(v) or v > MAX_RESIZE for v in sides)
    ):
        given = {k: v for k, v in values.items() if v}
        raise InputError(
            f"the image processor resizes to {given} (do_resize "
            f"{getattr(image_processor, 'do_resize', None)}, pad_size {pad}); wsssbed accepts "
            f"sizes of at most {MAX_RESIZE} pixels a side with the longest side bounded, "
            "as Grounding DINO's authors use (800 / 1333)",
            folder,
        )


def _check_normalisation(image_processor, folder: Path) -> None:
    """Refuse pixel constants that turn every picture into NaN or infinities (a zero or
    non-finite `image_std`, a non-finite `image_mean` or `rescale_factor`): the detector
    would find nothing and report "0 boxes"."""
    constants = {"image_mean": getattr(image_processor, "image_mean", None),
                 "image_std": getattr(image_processor, "image_std", None),
                 "rescale_factor": getattr(image_processor, "rescale_factor", None)}  # fmt: skip
    for name, value in constants.items():
        values = value if isinstance(value, list | tuple) else [value]
        numbers_ok = all(isinstance(v, int | float) and not isinstance(v, bool)
                         and math.isfinite(v) for v in values)  # fmt: skip
        if value is not None and (
            not values or not numbers_ok or (name != "image_mean" and min(values) <= 0)
        ):
            raise InputError(f"the image processor's {name} is {value!r:.60}: wsssbed accepts "
                             "finite numbers, positive for image_std and rescale_factor",
                             folder)  # fmt: skip


def _check_tokenizer(tokenizer, folder: Path) -> None:
    """Refuse a tokenizer that cannot tokenize a class prompt (a vocabulary without its
    unknown token fails on the first word it lacks)."""
    try:
        tokenizer("a cat . a dog .")
    except Exception as exc:  # a stranger's tokenizer: any failure to run it is its fault
        raise InputError(f"the tokenizer cannot tokenize a prompt: {exc}", folder) from exc


def _check_report(report: dict, folder: Path) -> None:
    """Refuse weights that transformers could not load in full."""
    problems = {name: sorted(map(str, report.get(name) or ()))
                for name in ("missing_keys", "unexpected_keys", "mismatched_keys",
                             "error_msgs")}  # fmt: skip
    found = {name: keys for name, keys in problems.items() if keys}
    if found:
        details = "; ".join(f"{len(keys)} {name.replace('_', ' ')} (first: {keys[0]})"
                            for name, keys in found.items())  # fmt: skip
        raise InputError(f"the weights do not fit the model config.json describes: {details}",
                         folder)  # fmt: skip


@contextmanager
def _without_bars(transformers) -> Iterator[None]:
    """transformers without its loading bars (our progress bar is the run's); its
    warnings and loading report stay on."""
    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            logging.enable_progress_bar()
