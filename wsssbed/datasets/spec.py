"""Dataset specifications: classes, palette, ignore value, layout and label mapping.

A spec is data (a small TOML file), so a user's own dataset plugs in the same way as the
built-in ones: `wsssbed sweep --dataset path/to/my_dataset.toml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsssbed.errors import InputError
from wsssbed.io.configio import from_table, read_toml

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
        missing: how to get this storage when a split's masks are not found (shown in
            the message; empty: the generic advice).
    """

    folder: str
    suffix: str
    mapping: str
    raw_ids: tuple[int, ...] = ()
    missing: str = ""


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
        split_digests: `split_digest` of the published id lists, where known (name ->
            `sha256:...`); with `splits`, the official lists' fingerprints.
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
    split_digests: dict[str, str] = field(default_factory=dict)
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


@dataclass
class _GroundTruthTable:
    """A `[[ground_truth]]` entry as written in the TOML file."""

    folder: str
    suffix: str = ".png"
    mapping: str = "identity"
    raw_ids: list[int] = field(default_factory=list)
    missing: str = ""


@dataclass
class _LayoutTable:
    """The `[layout]` table as written in the TOML file."""

    roots: list[str] = field(default_factory=lambda: [""])
    split_files: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    image_suffix: str = ".jpg"
    label_lists: list[str] = field(default_factory=list)


@dataclass
class _SpecFile:
    """A dataset spec file's top level, as written (checked by `from_table`)."""

    name: str
    classes: list[str]
    has_background: bool
    splits: dict[str, int]
    layout: _LayoutTable
    ground_truth: list[_GroundTruthTable]
    title: str = ""
    ignore_index: int = 255
    default_split: str = ""
    palette: str = "voc"
    category_ids: list[int] = field(default_factory=list)
    split_digests: dict[str, str] = field(default_factory=dict)


def _check_values(spec: _SpecFile, sources: list[_GroundTruthTable], path: Path) -> None:
    """Refuse every value that would make a spec score silently wrong."""
    k = len(spec.classes)
    if k == 0 or k > 255:
        raise InputError(f"needs 1..255 classes, has {k}", path)
    if len(set(spec.classes)) != k:
        raise InputError("a class name appears twice", path)
    if spec.ignore_index != 255:
        raise InputError("ignore_index must be 255 (wsssbed stores labels as uint8)", path)
    if spec.palette != "voc":
        raise InputError("palette: label maps are written with the VOC colour map only", path)
    if not spec.splits or any(n < 0 for n in spec.splits.values()):
        raise InputError("splits must name at least one split, each with a size >= 0", path)
    if spec.default_split and spec.default_split not in spec.splits:
        raise InputError(f"default_split {spec.default_split!r} is not one of the splits", path)
    for name, digest in spec.split_digests.items():
        if name not in spec.splits:
            raise InputError(f"split_digests: {name!r} is not one of the splits", path)
        if not (isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest)):
            raise InputError(
                f"split_digests.{name}: expected `sha256:` and 64 hex digits (the "
                "split_digest of the official id list)",
                path,
            )
    if not sources:
        raise InputError("needs at least one [[ground_truth]] entry", path)
    for number, source in enumerate(sources, start=1):
        where = f"[[ground_truth]] #{number}"
        if source.mapping not in MAPPINGS:
            choices = ", ".join(MAPPINGS)
            raise InputError(f"{where}: mapping {source.mapping!r} is not one of {choices}", path)
        if source.mapping == "reduce-zero-label" and k > 254:
            raise InputError(f"{where}: reduce-zero-label fits at most 254 classes", path)
        if source.mapping != "lookup":
            if source.raw_ids:
                raise InputError(f"{where}: raw_ids are used only by the lookup mapping", path)
            continue
        if len(source.raw_ids) != k:
            raise InputError(
                f"{where}: lookup mapping needs {k} raw_ids, has {len(source.raw_ids)}", path
            )
        outside = [v for v in source.raw_ids if not 0 <= v < spec.ignore_index]
        if outside:
            raise InputError(
                f"{where}: raw_ids {outside[:5]} are outside 0..{spec.ignore_index - 1} "
                f"(stored mask values; {spec.ignore_index} is void)",
                path,
            )
        if len(set(source.raw_ids)) != k:
            raise InputError(f"{where}: raw_ids lists a stored value twice", path)
    expected = k - int(spec.has_background)
    if spec.category_ids and (
        len(spec.category_ids) != expected or len(set(spec.category_ids)) != expected
        or min(spec.category_ids) < 1
    ):  # fmt: skip
        raise InputError("category_ids must give one distinct id >= 1 per foreground class", path)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a dataset spec TOML file; errors name the file and the field."""
    path = Path(path)
    return spec_from_table(read_toml(path, "dataset spec"), path)


def spec_from_table(data: dict, path: Path | str) -> DatasetSpec:
    """Validate a parsed dataset spec (a file's, or the text a run recorded)."""
    raw = from_table(_SpecFile, data, path, "dataset spec")
    layout = from_table(_LayoutTable, raw.layout, path, "layout")
    if not isinstance(raw.ground_truth, list):
        raise InputError("ground_truth must be an array of tables ([[ground_truth]])", path)
    sources = [from_table(_GroundTruthTable, e, path, "ground_truth") for e in raw.ground_truth]
    _check_values(raw, sources, path)
    return DatasetSpec(
        name=raw.name,
        title=raw.title or raw.name,
        classes=tuple(raw.classes),
        has_background=raw.has_background,
        ignore_index=raw.ignore_index,
        splits=dict(raw.splits),
        default_split=raw.default_split or next(iter(raw.splits)),
        roots=tuple(layout.roots) or ("",),
        split_files=tuple(layout.split_files),
        images=tuple(layout.images),
        image_suffix=layout.image_suffix,
        label_lists=tuple(layout.label_lists),
        ground_truth=tuple(
            GroundTruthSource(s.folder, s.suffix, s.mapping, tuple(s.raw_ids), s.missing)
            for s in sources
        ),
        category_ids=tuple(raw.category_ids),
        split_digests=dict(raw.split_digests),
        source=str(path),
    )
