"""A dataset on disk: layout resolution, split lists, ground-truth reading, image labels."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from wsssbed.datasets.colours import colour_coded_error
from wsssbed.datasets.sanity import SYNTHETIC, SplitCheck, check_split, missing_masks_hint
from wsssbed.datasets.spec import DatasetSpec, GroundTruthSource
from wsssbed.errors import ColourImageError, InputError
from wsssbed.io.imageio import picture_size, read_png_array, read_rgb, regular_file
from wsssbed.io.names import check_id, read_lines

UNKNOWN = -1


def label_lookup(spec: DatasetSpec, source: GroundTruthSource) -> np.ndarray:
    """256-entry table from stored mask values to class ids (255 = void, -1 = unknown; a
    stored 255 is unknown to `reduce-zero-label`, whose raw masks never hold it)."""
    table = np.full(256, UNKNOWN, dtype=np.int16)
    table[spec.ignore_index] = spec.ignore_index
    k = spec.num_classes
    if source.mapping == "identity":
        table[:k] = np.arange(k)
    elif source.mapping == "reduce-zero-label":
        table[0] = spec.ignore_index
        table[1 : k + 1] = np.arange(k)
        table[spec.ignore_index] = UNKNOWN  # never in raw masks: these were reduced already
    else:
        table[list(source.raw_ids)] = np.arange(k)
    return table


def map_labels(raw: np.ndarray, table: np.ndarray, path: Path) -> np.ndarray:
    """Apply a lookup table; any stored value the dataset does not know is an error."""
    mapped = table[raw]
    if (mapped == UNKNOWN).any():
        bad = np.unique(raw[mapped == UNKNOWN])[:10].tolist()
        raise InputError(f"mask holds label values the dataset does not define: {bad}", path)
    return mapped.astype(np.uint8)


def mapping_hint(raw: np.ndarray, spec: DatasetSpec, source: GroundTruthSource) -> str:
    """Why a mask holds values its storage does not define, and the fix ("" if unknown).

    Raw ADE20K / Context masks (reduce-zero-label) never hold 255: one that does was
    reduced already, and reducing it again would shift every class. Values that another
    storage of the spec defines mean the files are named for the wrong storage (COCO-Stuff's
    `_labelTrainIds.png` against the raw stuffthingmaps); raw COCO category ids go through
    `datasets prepare`.
    """
    if source.mapping == "reduce-zero-label" and (raw == spec.ignore_index).any():
        return (
            f"raw {spec.title} masks store class c as c + 1 with 0 = unlabelled and never "
            f"hold {spec.ignore_index}, so these masks look already reduced (0 -> 255, c -> "
            "c - 1); reducing them again would shift every class by one. Give the raw "
            "annotations as distributed, or score reduced masks with a dataset spec whose "
            "[[ground_truth]] mapping is identity"
        )
    for other in spec.ground_truth:
        if other.mapping != source.mapping and (label_lookup(spec, other)[raw] != UNKNOWN).all():
            return (
                f"the values fit the spec's other storage, `{other.folder}/<id>{other.suffix}` "
                f"({other.mapping}): these masks are probably that kind, under "
                f"`{source.suffix}` names; rename them to end in {other.suffix}"
            )
    if spec.category_ids:
        return (
            "masks stored with raw COCO category ids (up to 90, with gaps) are converted by "
            "`wsssbed datasets prepare coco2014 --from FOLDER`"
        )
    return ""


def read_id_list(path: Path) -> list[str]:
    """Image ids from a split file: first token of each non-empty line, order kept.

    UTF-8 with or without a byte-order mark, LF or CRLF endings (`read_lines`).

    Raises:
        InputError: naming the line of an id that cannot name a file (`check_id`), of an
            id listed twice, or of bytes that are not UTF-8.
    """
    ids: dict[str, int] = {}
    for number, tokens in read_lines(path, "split list"):
        image_id = check_id(tokens[0], "image id", path, f"line {number}: ")
        if image_id in ids:
            raise InputError(
                f"line {number}: image id {image_id!r} is listed twice (first on line "
                f"{ids[image_id]})",
                path,
            )
        ids[image_id] = number
    return list(ids)


def read_label_list(path: Path, spec: DatasetSpec) -> dict[str, tuple[int, ...]]:
    """Image-level labels from `image_id c1 c2 ...` lines (0-based foreground indices).

    Returns dataset class ids (with background, `c + 1`).

    Raises:
        InputError: naming the line of any byte that is not UTF-8, of an id that cannot
            name a file, or of an index that is not an integer of the dataset (checked
            before any arithmetic).
    """
    foreground = spec.num_classes - spec.first_foreground
    labels: dict[str, tuple[int, ...]] = {}
    for number, tokens in read_lines(path, "label list"):
        image_id = check_id(tokens[0], "image id", path, f"line {number}: ")
        keys = []
        for token in tokens[1:]:
            if not (token.isascii() and token.isdigit()) or int(token) >= foreground:
                raise InputError(
                    f"line {number}: class index {token[:20]!r} is not an integer in "
                    f"0..{foreground - 1}",
                    path,
                )
            keys.append(int(token))
        ids = spec.foreground_class_ids(np.array(keys, dtype=np.int64))
        labels[image_id] = tuple(sorted(set(ids.tolist())))
    return labels


def is_id_file(split: str) -> bool:
    """Whether a `--split` value names an id-list file rather than a split."""
    return split.endswith(".txt") or "/" in split or os.sep in split


@dataclass
class LocalDataset:
    """One split of a dataset below a data root, or the images an id-list file names.

    Attributes:
        spec: the dataset spec.
        data_root: folder the user gave; the spec's `roots` are tried below it.
        split: split name (any id list in the split folder, or a mask folder), or the
            path of an id-list file (one image id per line, `is_id_file`).
        id_file: that file, resolved; None for a split name.
        layout_split: the split whose folders hold the images (`{split}` in the layout):
            `split` itself, or for an id file the split whose masks hold its first id.
    """

    spec: DatasetSpec
    data_root: Path
    split: str
    id_file: Path | None = field(init=False, default=None)
    layout_split: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.layout_split = self.split
        if self.split not in self.spec.splits and is_id_file(self.split):
            path = Path(self.split).expanduser()
            if not path.exists():
                raise InputError("split id file not found", path)
            regular_file(path)  # a pipe or folder: named as such
            self.id_file = path.resolve()
            self.layout_split = self._split_holding(self.ids[0])

    @property
    def split_name(self) -> str:
        """How runs name what was scored: the split, or the id file's name."""
        return self.split if self.id_file is None else self.id_file.name

    def _split_holding(self, image_id: str) -> str:
        """The published split whose mask folder holds `image_id` (id files only)."""
        templated = [s for s in self.spec.ground_truth if "{split}" in s.folder]
        if not templated:
            return self.id_file.stem
        for name in self.spec.splits:
            for relative in self.spec.roots:
                for source in templated:
                    folder = self.data_root / relative / source.folder.replace("{split}", name)
                    if (folder / f"{image_id}{source.suffix}").is_file():
                        return name
        raise InputError(
            f"image {image_id!r} (the first id) is in none of the {self.spec.title} splits "
            f"({', '.join(self.spec.splits)}) below {self.data_root}",
            self.id_file,
        )

    def _fill(self, template: str) -> str:
        return template.replace("{split}", self.layout_split)

    @cached_property
    def root(self) -> Path:
        """The folder below `data_root` that holds this dataset's layout."""
        if not self.data_root.is_dir():
            raise InputError("data root is not a folder", self.data_root)
        for relative in self.spec.roots:
            candidate = self.data_root / relative
            if any((candidate / self._fill(s.folder)).is_dir() for s in self.spec.ground_truth):
                return candidate
        tried = ", ".join(
            str(Path(r) / self._fill(s.folder))
            for r in self.spec.roots
            for s in self.spec.ground_truth
        )
        raise InputError(
            f"no {self.spec.title} ground-truth folder found (tried {tried})", self.data_root
        )

    def _first_existing(self, templates: tuple[str, ...], folder: bool) -> Path | None:
        """The first of the layout's candidates below the root that exists, or None."""
        for template in templates:
            candidate = self.root / self._fill(template)
            if candidate.is_dir() if folder else candidate.is_file():
                return candidate
        return None

    @cached_property
    def split_file(self) -> Path | None:
        """The id list of the split, or None when the split is a mask folder."""
        if self.id_file is not None:
            return self.id_file
        return self._first_existing(self.spec.split_files, folder=False)

    @cached_property
    def gt_source(self) -> GroundTruthSource:
        """The first ground-truth storage that holds the split's first image."""
        ids = self.ids
        for source in self.spec.ground_truth:
            folder = self.root / self._fill(source.folder)
            if ids and (folder / f"{ids[0]}{source.suffix}").is_file():
                return source
        first = self.root / self._fill(self.spec.ground_truth[0].folder)
        hint = missing_masks_hint(self.spec, self.root, self.layout_split, None)
        raise InputError(
            f"ground truth of image {ids[0] if ids else '?'} (the split's first) not found "
            f"in any of the spec's mask folders; {hint}",
            first,
        )

    @cached_property
    def ids(self) -> list[str]:
        """Image ids of the split, in the split file's order (sorted for mask folders)."""
        if self.split_file is not None:
            ids = read_id_list(self.split_file)
        else:
            ids = self._ids_from_mask_folder()
        if not ids:
            raise InputError(f"split {self.split!r} lists no images", self.split_file or self.root)
        return ids

    def subset(self, ids: list[str]) -> LocalDataset:
        """The same split restricted to `ids`, in that order (a shard of a larger run)."""
        part = dataclasses.replace(self)
        part.__dict__["ids"] = list(ids)  # fills the cached property
        return part

    def _ids_from_mask_folder(self) -> list[str]:
        for source in self.spec.ground_truth:
            folder = self.root / self._fill(source.folder)
            if folder.is_dir() and "{split}" in source.folder:
                names = sorted(p.name for p in folder.iterdir() if p.name.endswith(source.suffix))
                return [check_id(n[: -len(source.suffix)], "image id", folder / n) for n in names]
        tried = ", ".join(self._fill(t) for t in self.spec.split_files)
        raise InputError(f"split {self.split!r} not found (tried {tried})", self.root)

    @cached_property
    def _lookup(self) -> np.ndarray:
        return label_lookup(self.spec, self.gt_source)

    @cached_property
    def gt_folder(self) -> Path:
        """The folder the masks are read from (e.g. `.../SegmentationClassAug`)."""
        return self.root / self._fill(self.gt_source.folder)

    def gt_path(self, image_id: str) -> Path:
        """Path of an image's mask."""
        return self.gt_folder / f"{image_id}{self.gt_source.suffix}"

    def read_gt(self, image_id: str) -> np.ndarray:
        """HxW uint8 class ids, 255 = void, mapped by the dataset's label mapping.

        Raises:
            InputError: naming the mask, with the likely cause and the fix for a missing
                mask, a colour-coded or JPEG mask, and values the mapping does not define
                (masks already reduced, raw ids under another storage's name).
        """
        path = self.gt_path(image_id)
        raw = self.read_stored_gt(image_id)
        try:
            return map_labels(raw, self._lookup, path)
        except InputError as error:
            hint = mapping_hint(raw, self.spec, self.gt_source)
            if not hint:
                raise
            raise InputError(f"{error.problem}; {hint}", path) from None

    def read_stored_gt(self, image_id: str) -> np.ndarray:
        """HxW uint8 mask values as stored, before the label mapping (read-only).

        With an identity mapping these are the class ids `read_gt` returns once its check
        that every value is defined has passed.

        Raises:
            InputError: as `read_gt`, for a missing, colour-coded, JPEG or corrupt file.
        """
        path = self.gt_path(image_id)
        try:
            return read_png_array(path, writable=False)
        except ColourImageError:
            raise colour_coded_error(path, self.spec, "the ground truth") from None
        except InputError as error:
            if error.problem != "file not found":
                raise
            hint = missing_masks_hint(self.spec, self.root, self.layout_split, self.gt_source)
            raise InputError(f"mask not found; {hint}", path) from None

    def check_masks(self) -> None:
        """Refuse a split whose mask folder lacks some of its images, before any work:
        one listing of the folder, with how to get the missing masks.

        Raises:
            InputError: naming the folder, the count and the first missing ids.
        """
        suffix = self.gt_source.suffix
        try:
            names = {n[: -len(suffix)] for n in os.listdir(self.gt_folder) if n.endswith(suffix)}
        except OSError as exc:
            raise InputError(f"cannot list the masks: {exc.strerror}", self.gt_folder) from exc
        missing = [i for i in self.ids if i not in names]
        if missing:
            hint = missing_masks_hint(self.spec, self.root, self.layout_split, self.gt_source)
            raise InputError(
                f"{len(missing):,} of the {len(self.ids):,} images of {self.split_name} "
                f"have no mask here (first: {', '.join(missing[:5])}); {hint}",
                self.gt_folder,
            )

    @cached_property
    def split_check(self) -> SplitCheck:
        """Whether the split's ids are the official list (`sanity.check_split`); an id
        file is marked by its name instead, and a synthetic root has lists of its own
        (None for both)."""
        if self.id_file is not None or (self.data_root / SYNTHETIC).is_file():
            return SplitCheck(None)
        where = self.split_file or self.gt_folder
        return check_split(self.spec, self.split, self.ids, where)

    @cached_property
    def image_folder(self) -> Path | None:
        """Folder of the RGB images, or None when the copy has none (they are optional)."""
        return self._first_existing(self.spec.images, folder=True)

    def image_path(self, image_id: str) -> Path | None:
        """Path of an image's RGB picture, when the copy has images."""
        folder = self.image_folder
        return None if folder is None else folder / f"{image_id}{self.spec.image_suffix}"

    def read_image(self, image_id: str) -> np.ndarray:
        """HxWx3 uint8 RGB picture of an image (for generators that look at pixels)."""
        return read_rgb(self._picture(image_id))

    def image_size(self, image_id: str) -> tuple[int, int]:
        """(height, width) of an image's picture, from its header."""
        return picture_size(self._picture(image_id))

    def _picture(self, image_id: str) -> Path:
        """`image_path`, or an error when the copy has no image folder."""
        path = self.image_path(image_id)
        if path is None:
            tried = ", ".join(self._fill(t) for t in self.spec.images)
            raise InputError(f"this copy has no images (tried {tried})", self.root)
        return path

    @cached_property
    def label_list_file(self) -> Path | None:
        """The split's image-level label list (`image_id c1 c2 ...`), when present."""
        return self._first_existing(self.spec.label_lists, folder=False)


def labels_from_mask(gt: np.ndarray, spec: DatasetSpec) -> tuple[int, ...]:
    """Image-level labels present in a mask: foreground class ids, void excluded."""
    present = np.flatnonzero(np.bincount(gt.ravel(), minlength=256)[: spec.num_classes])
    return tuple(int(c) for c in present if c >= spec.first_foreground)
