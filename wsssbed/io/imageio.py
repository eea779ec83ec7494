"""Safe reading and atomic writing of 8-bit PNG images (masks, saliency, per-class maps)."""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wsssbed.errors import ColourImageError, InputError
from wsssbed.io.outputs import follow_umask, inside, naming

#: Largest image wsssbed decodes (pixels); larger files are refused before decoding.
MAX_PIXELS = 64_000_000
#: Formats (PIL's names) whose compression changes values: refused for integer images.
LOSSY_FORMATS = ("JPEG", "MPO")


def read_png_array(
    path: Path,
    *,
    gray: bool = False,
    expected: tuple[int, int] | None = None,
    writable: bool = True,
) -> np.ndarray:
    """Decode an 8-bit image file into a HxW uint8 array (palette indices kept as is).

    The bytes decide, not the name: a JPEG file is refused unless `gray` (JPEG's lossy
    compression turns class ids into neighbouring ids, which are valid ones); the format
    is read from the header, so the check costs nothing.

    Args:
        path: the file.
        gray: convert RGB/RGBA to luminance ("L") as WSSS-BED does for saliency maps;
            otherwise only single-channel images ("L", "P") of lossless formats are
            accepted.
        expected: (H, W) the header must declare, checked before decoding.
        writable: return a writable copy; False returns the decoded pixels themselves
            (read-only, C-ordered), one copy fewer for readers that only look.

    Raises:
        ColourImageError: an RGB(A) image without `gray` (colour-coded masks?).
        InputError: missing, corrupt, too large, JPEG data, or not an 8-bit image.
    """

    def single_channel(image: Image.Image) -> np.ndarray:
        if gray and image.mode in ("RGB", "RGBA", "LA"):
            return np.asarray(image.convert("L"))
        if not gray and image.format in LOSSY_FORMATS:
            raise InputError(
                f"the bytes are {image.format} data{_named(path)}: lossy compression turns "
                "class ids into neighbouring values, which are valid ids, so the file cannot "
                "hold labels; save the label arrays again as PNG from where they were made "
                "(converting this file keeps the damage)",
                path,
            )
        if image.mode in ("L", "P"):
            return np.asarray(image)
        if image.mode in ("RGB", "RGBA"):
            raise ColourImageError(
                f"expected a single-channel 8-bit image, found an {image.mode} image "
                "(colour-coded masks, or a map saved as a heat map?)",
                path,
            )
        raise InputError(f"expected a single-channel 8-bit image, found mode {image.mode!r}", path)

    decoded = _decode(path, single_channel, expected)
    return _as_uint8(decoded) if writable else np.asarray(decoded, dtype=np.uint8, order="C")


def _named(path: Path) -> str:
    """` under a .png name`, when the name claims another format than the bytes."""
    suffix = path.suffix.lower()
    return f" under a {path.suffix} name" if suffix not in ("", ".jpg", ".jpeg") else ""


def read_rgb(path: Path) -> np.ndarray:
    """Decode a picture (JPEG, PNG, ...) into a HxWx3 uint8 RGB array.

    Raises:
        InputError: missing, corrupt or too large.
    """
    return _as_uint8(_decode(path, lambda image: np.asarray(image.convert("RGB"))))


def picture_size(path: Path) -> tuple[int, int]:
    """(height, width) of a picture, read from its header only.

    Raises:
        InputError: missing or not a picture.
    """
    return _decode(path, lambda image: (image.height, image.width))


def regular_file(path: Path) -> int:
    """The size of `path`, after checking it is a regular file.

    A pipe, device or socket in a maps folder would block a read forever, so readers call
    this before opening anything a stranger supplied.

    Raises:
        InputError: missing, unreadable, or not a regular file.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise InputError("file not found", path) from exc
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path) from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError("not a regular file (a pipe, device or folder); give a plain file", path)
    return info.st_size


def _as_uint8(array: np.ndarray) -> np.ndarray:
    return np.array(array, dtype=np.uint8, order="C")  # a writable copy


def _decode(path: Path, convert, expected: tuple[int, int] | None = None):
    """`convert(opened PIL image)`, refusing files over `MAX_PIXELS` (or not of the
    `expected` (H, W)) before decoding and turning every decoding failure into an
    `InputError` naming the file."""
    regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            with image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise InputError(
                        f"image is {width}x{height}, above the {MAX_PIXELS:,}-pixel budget", path
                    )
                if expected is not None and (height, width) != tuple(expected):
                    raise InputError(
                        f"size {height}x{width} differs from the ground truth's "
                        f"{expected[0]}x{expected[1]} (H x W)",
                        path,
                    )
                return convert(image)
    except FileNotFoundError as exc:
        raise InputError("file not found", path) from exc
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise InputError(f"cannot decode image: {exc}", path) from exc


def write_png_atomic(path: Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a HxW uint8 array as PNG (palette mode when `palette` is given), atomically.

    The file appears complete under its name or not at all: it is written beside the
    target and renamed.
    """
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L")
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette)
    write_atomic(path, lambda f: image.save(f, format="PNG"))


def write_atomic(path: Path, write) -> None:
    """Call `write(file_object)` on a temporary file beside `path`, then rename it.

    An OS error that names no file (a full disk) names `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with naming(path), os.fdopen(handle, "wb") as stream:
            write(stream)
        follow_umask(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` atomically (see `write_atomic`)."""
    payload = text.encode("utf-8")
    write_atomic(path, lambda stream: stream.write(payload))


def list_png_ids(folder: Path) -> set[str]:
    """Image ids of `<id>.png` files in a saliency or label-map folder."""
    if not folder.is_dir():
        raise InputError("folder not found", folder)
    return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".png")}


def read_label_map(
    folder: Path, image_id: str, expected: tuple[int, int] | None = None
) -> np.ndarray:
    """HxW uint8 class ids of a hard label map (255 = unlabelled); `expected` (H, W) is
    checked from the header before decoding."""
    return read_png_array(folder / f"{image_id}.png", expected=expected)


def write_label_map(folder: Path, image_id: str, labels: np.ndarray, palette: list[int]) -> None:
    """Write an HxW uint8 label map as a palette PNG, atomically."""
    write_png_atomic(inside(folder, f"{image_id}.png"), labels, palette)
