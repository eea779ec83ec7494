"""Colour-coded masks: RGB pictures of class ids drawn in the dataset's palette.

Repositories often publish ground truth or predictions as RGB PNGs in the VOC colour map
(aeroplane (128, 0, 0), void (224, 224, 192), ...). Converted to grey they give wrong
ids, so they are decoded exactly through the palette: each colour is the palette colour
of one class or of void (255), and any other colour is refused, by name.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import ColourImageError, InputError
from wsssbed.io.imageio import read_png_array, read_rgb, write_label_map
from wsssbed.io.outputs import follow_umask

COMMAND = "wsssbed datasets decode-colours"
SHOWN = 5  # colours named in a message


def _packed(rgb: np.ndarray) -> np.ndarray:
    """(...) uint32 `r << 16 | g << 8 | b` of (..., 3) uint8 colours."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _triple(packed: int) -> tuple[int, int, int]:
    return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255


def palette_ids(spec: DatasetSpec) -> dict[int, int]:
    """Packed palette colour -> class id, for the dataset's classes and void (255)."""
    colours = _packed(np.asarray(spec.palette(), dtype=np.uint8).reshape(256, 3))
    ids = [*range(spec.num_classes), spec.ignore_index]
    return {int(colours[i]): i for i in ids}


def _colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct packed colours, their pixel counts, each pixel's index into them)."""
    colours, inverse, counts = np.unique(
        _packed(rgb).ravel(), return_inverse=True, return_counts=True
    )
    return colours, counts, inverse


def _name(spec: DatasetSpec, class_id: int) -> str:
    return "void" if class_id == spec.ignore_index else spec.classes[class_id]


def decode_colours(rgb: np.ndarray, spec: DatasetSpec, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 colour-coded mask -> (H, W) uint8 class ids (255 = void).

    Raises:
        InputError: naming `path` and the colours that are not the palette's.
    """
    table = palette_ids(spec)
    colours, counts, inverse = _colours(rgb)
    ids = np.array([table.get(int(c), -1) for c in colours], dtype=np.int16)
    if (ids < 0).any():
        unknown = colours[ids < 0]
        share = counts[ids < 0].sum() / counts.sum()
        shown = ", ".join(str(_triple(int(c))) for c in unknown[:SHOWN])
        raise InputError(
            f"{len(unknown)} colours ({share:.1%} of the pixels) are not colours of the "
            f"{spec.name} palette (first: {shown}); only exact palette colours can be "
            "decoded into class ids (anti-aliased or resized masks cannot)",
            path,
        )
    return ids[inverse].reshape(rgb.shape[:2]).astype(np.uint8)


def colour_coded_error(path: Path, spec: DatasetSpec, what: str) -> InputError:
    """The message for an RGB image read where `what` (ground truth, label maps) must be
    class ids: colour-coded in the dataset's palette (and how to decode), or not."""
    rgb = read_rgb(path)
    table = palette_ids(spec)
    colours, counts, _ = _colours(rgb)
    known = [(int(n), table[int(c)], int(c)) for c, n in zip(colours, counts) if int(c) in table]
    if len(known) < len(colours):
        unknown = [int(c) for c in colours if int(c) not in table]
        shown = ", ".join(str(_triple(c)) for c in unknown[:SHOWN])
        return InputError(
            f"{what} must be single-channel images of class ids (a palette PNG or 8-bit "
            f"grey), found an RGB image with {len(colours)} colours, {len(unknown)} of them "
            f"outside the {spec.name} palette (first: {shown})",
            path,
        )
    _, class_id, colour = max(known, key=lambda k: (k[1] not in (0, 255), k[0]))
    return InputError(
        f"{what} is colour-coded: an RGB image whose {len(colours)} colours are all "
        f"{spec.name} palette colours (e.g. {_triple(colour)} = {_name(spec, class_id)}), "
        f"where class ids are needed. Converting it to grey gives wrong ids; decode the "
        f"folder exactly through the palette: `{COMMAND} {path.parent} --dataset "
        f"{spec.source if _is_user_spec(spec) else spec.name} --out NEW_FOLDER`",
        path,
    )


def _is_user_spec(spec: DatasetSpec) -> bool:
    from wsssbed.datasets import BUILTIN

    return spec.name not in BUILTIN and bool(spec.source)


def decode_colour_folder(
    source: Path,
    out: Path,
    spec: DatasetSpec,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Decode every `*.png` of `source` into a palette PNG of class ids in `out`.

    All or nothing: the files are written into a staging folder beside `out`, renamed to
    `out` once every one decoded. `out` must not exist (or be an empty folder).

    Returns:
        the number of files written.

    Raises:
        InputError: `out` is a link, or exists and is not empty; a file that is not an
            RGB PNG in the palette (naming it and its foreign colours); no PNG in `source`.
    """
    if not source.is_dir():
        raise InputError("folder not found", source)
    if out.is_symlink():  # the staging folder is renamed to `out`, which a link blocks
        raise InputError("the output folder is a link; give a new folder", out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("the output folder exists and is not empty; give a new one", out)
    if out.resolve() == source.resolve():
        raise InputError("the output folder must differ from the input folder", out)
    files = sorted(p for p in source.iterdir() if p.name.endswith(".png"))
    if not files:
        raise InputError("no .png files here", source)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    follow_umask(staging)
    try:
        for done, path in enumerate(files, start=1):
            write_label_map(staging, path.stem, _decode_file(path, spec), spec.palette())
            if progress is not None:
                progress(done, len(files))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(files)


def _decode_file(path: Path, spec: DatasetSpec) -> np.ndarray:
    """One colour-coded file's class ids; a file already holding ids, or JPEG bytes
    (`read_png_array` refuses them first), is refused."""
    try:
        read_png_array(path)
    except ColourImageError:
        return decode_colours(read_rgb(path), spec, path)
    raise InputError("already a single-channel image (class ids): nothing to decode", path)
