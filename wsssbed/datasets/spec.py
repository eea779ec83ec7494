"""Dataset specifications: classes, palette, ignore value, layout and label mapping.

A spec is data (a small TOML file), so a user's own dataset plugs in the same way as the
built-in ones: `wsssbed sweep --dataset path/to/my_dataset.toml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsssbed.configio import read_toml
from wsssbed.errors import InputError

MAPPINGS = ("identity", "reduce-zero-label", "lookup")


@dataclass(frozen=True)
class GroundTruthSource:
    """One way a dataset's masks can be stored below a data root.

    Attributes:
        folder: folder below the root; `{split}` is replaced by the split name.
        suffix: file name is `<image id><suffix>`.
        mapping: how stored values become class indices: `identity`, `reduce-zero-label`
            (0 -> ignore, k -> k-1) or `lookup` (the i-th of `raw_ids` -> class i).
        raw_ids: stored values of classes 0..K-1, for `lookup`.
    """

    folder: str
    suffix: str
    mapping: str
    raw_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """Everything wsssbed needs to know about a segmentation dataset.

    Attributes:
        name: short identifier (`voc2012`).
        title: human-readable name.
        classes: class names; index = class id in the mapped masks.
        has_background: class 0 is background (a below-threshold pixel becomes 0);
            otherwise a below-threshold pixel becomes unlabelled (`ignore_index`).
        ignore_index: void value in mapped masks and "unlabelled" in predictions (255).
        splits: published split sizes (name -> image count).
        default_split: the split used when none is given.
        roots, split_files, images, image_suffix, label_lists: layout candidates below a
            data root, tried in order (`{split}` is substituted).
        ground_truth: mask storage candidates, tried in order.
        category_ids: COCO category id of each foreground class (COCO 2014 only).
    """

    name: str
    title: str
    classes: tuple[str, ...]
    has_background: bool
    ignore_index: int
    splits: dict[str, int]
    default_split: str
    roots: tuple[str, ...]
    split_files: tuple[str, ...]
    images: tuple[str, ...]
    image_suffix: str
    label_lists: tuple[str, ...]
    ground_truth: tuple[GroundTruthSource, ...]
    category_ids: tuple[int, ...] = ()
    source: str = field(default="", compare=False)

    @property
    def num_classes(self) -> int:
        """Number of classes K (background included when the dataset has one)."""
        return len(self.classes)

    @property
    def first_foreground(self) -> int:
        """Class id of the first foreground class: 1 with background, else 0."""
        return 1 if self.has_background else 0

    @property
    def foreground_names(self) -> tuple[str, ...]:
        """The foreground class names, in class-id order."""
        return self.classes[self.first_foreground :]

    def palette(self) -> list[int]:
        """Flat 768-entry RGB palette for palette-mode PNGs (index 255 stays as given)."""
        return voc_palette()

    def foreground_class_ids(self, keys: np.ndarray) -> np.ndarray:
        """Map 0-based foreground keys (as IRN-family maps store them) to class ids."""
        return np.asarray(keys, dtype=np.int64) + self.first_foreground

    def foreground_keys(self, class_ids: np.ndarray) -> np.ndarray:
        """Inverse of `foreground_class_ids`."""
        return np.asarray(class_ids, dtype=np.int64) - self.first_foreground


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map: 256 RGB triples from the bits of the label index."""
    palette = []
    for label in range(256):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((r, g, b))
    return palette


def _strings(table: dict, key: str, where: Path) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"`{key}` must be a list of strings", where)
    return tuple(value)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a dataset spec TOML file; errors name the file and the field."""
    path = Path(path)
    data = read_toml(path, "dataset spec")
    for key in ("name", "classes", "has_background", "splits", "layout", "ground_truth"):
        if key not in data:
            raise InputError(f"dataset spec lacks `{key}`", path)
    classes = _strings(data, "classes", path)
    if len(classes) == 0 or len(classes) > 255:
        raise InputError(f"needs 1..255 classes, has {len(classes)}", path)
    if len(set(classes)) != len(classes):
        raise InputError("a class name appears twice", path)
    layout = data["layout"]
    sources = []
    for entry in data["ground_truth"]:
        mapping = entry.get("mapping", "identity")
        if mapping not in MAPPINGS:
            raise InputError(f"ground_truth mapping {mapping!r} is not one of {MAPPINGS}", path)
        raw_ids = tuple(int(v) for v in entry.get("raw_ids", []))
        if mapping == "lookup" and len(raw_ids) != len(classes):
            raise InputError(
                f"lookup mapping needs {len(classes)} raw_ids, has {len(raw_ids)}", path
            )
        sources.append(
            GroundTruthSource(
                str(entry["folder"]), str(entry.get("suffix", ".png")), mapping, raw_ids
            )
        )
    splits = {str(k): int(v) for k, v in data["splits"].items()}
    ignore_index = int(data.get("ignore_index", 255))
    if ignore_index != 255:
        raise InputError("ignore_index must be 255 (wsssbed stores labels as uint8)", path)
    if data.get("palette", "voc") != "voc":
        raise InputError("palette: label maps are written with the VOC colour map only", path)
    category_ids = tuple(int(v) for v in data.get("category_ids", []))
    if category_ids and len(category_ids) != len(classes) - int(bool(data["has_background"])):
        raise InputError("category_ids must give one id per foreground class", path)
    return DatasetSpec(
        name=str(data["name"]),
        title=str(data.get("title", data["name"])),
        classes=classes,
        has_background=bool(data["has_background"]),
        ignore_index=ignore_index,
        splits=splits,
        default_split=str(data.get("default_split", next(iter(splits), "train"))),
        roots=_strings(layout, "roots", path) or ("",),
        split_files=_strings(layout, "split_files", path),
        images=_strings(layout, "images", path),
        image_suffix=str(layout.get("image_suffix", ".jpg")),
        label_lists=_strings(layout, "label_lists", path),
        ground_truth=tuple(sources),
        category_ids=category_ids,
        source=str(path),
    )
