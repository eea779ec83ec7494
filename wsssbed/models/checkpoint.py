"""Read model weights from a user's files, safely: tensors only, never arbitrary pickles,
nothing downloaded, nothing built that the file does not hold.

- `read_state_dict`: `.safetensors` with safetensors; anything else must be PyTorch's zip
  format with every member stored, not compressed (`torch.load` inflates a deflated
  member in full before it checks its size: a 400 KB file took 890 MB), read with
  `torch.load(weights_only=True)`; the legacy pre-1.6 format, whose headers declare
  storage sizes that are allocated before they are checked, is refused.
- `build_checked`: the model a config describes is first built on PyTorch's `meta`
  device (no memory), and its tensors' names and shapes compared with the file's; only
  a model that matches is built for real and loaded strictly. A config that claims
  dimensions the weights do not have therefore never allocates them.
- `offline`: the Hugging Face libraries in offline mode while a model loads.
- `inside`: a file of a model folder, which must stay inside that folder.
- `MAX_HEADS`: attention heads multiply activation memory without leaving a trace in
  the weights' shapes, so configs may not claim more than the published models use.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from wsssbed.errors import InputError
from wsssbed.io.imageio import regular_file

#: Most attention heads a config may claim (Swin-B's last stage has 32; SAM-H, BERT and
#: the CLIP ViTs use at most 16).
MAX_HEADS = 32
_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

Shapes = Mapping[str, tuple[int, ...]]


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on the CPU.

    A state dict nested under `state_dict` or `model` (training checkpoints) is
    unwrapped, and a `module.` prefix (DataParallel) is dropped.

    Args:
        path: the checkpoint the user gave.
        what: the model it should hold, for messages ("a SAM checkpoint").

    Raises:
        InputError: missing, not a regular file, unreadable, compressed or legacy
            PyTorch format, or no tensors in it.
    """
    if not path.exists():
        raise InputError(f"{what} not found (weights are never downloaded: give a local file)",
                         path)  # fmt: skip
    regular_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(str(path), device="cpu")
        else:
            _check_torch_zip(path, what)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {what}: {first_line}", path) from exc
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not any(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise InputError(f"holds no tensors; expected {what}", path)
    return {
        key.removeprefix("module."): value
        for key, value in loaded.items()
        if isinstance(value, torch.Tensor)
    }


def _check_torch_zip(path: Path, what: str) -> None:
    """Refuse a PyTorch file that is not the zip format with stored members only."""
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"cannot read {what}: not PyTorch's zip format (files saved by torch >= 1.6 or "
            "safetensors); re-save it with a recent torch",
            path,
        )
    with zipfile.ZipFile(path) as archive:
        packed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise InputError(
            f"cannot read {what}: member {packed[0]!r} is compressed, which torch.save never "
            "does (torch would inflate it in full before checking it)",
            path,
        )


def shapes_of(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of each tensor."""
    return {key: tuple(value.shape) for key, value in state.items()}


def check_weights(model: torch.nn.Module, shapes: Shapes, path: Path, what: str) -> None:
    """Refuse weights whose names or shapes differ from `model`'s state dict (which may
    live on the `meta` device: only shapes are read).

    Raises:
        InputError: missing or unexpected keys, or tensors of another shape (a checkpoint
            of another model or model size, or a config claiming other dimensions).
    """
    expected = shapes_of(model.state_dict())
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    reshaped = [f"{k} {shapes[k]} vs {v}" for k, v in expected.items()
                if k in shapes and tuple(shapes[k]) != v]  # fmt: skip
    if missing or unexpected or reshaped:
        details = []
        if reshaped:
            details.append(f"{len(reshaped)} tensors of another shape (first: {reshaped[0]})")
        if missing:
            details.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise InputError(f"does not fit {what}: {'; '.join(details)}", path)


def check_shape_counts(model: torch.nn.Module, shapes: Shapes, path: Path, what: str) -> None:
    """Refuse weights whose tensor shapes, counted, differ from `model`'s (tied tensors
    once): for libraries that rename checkpoint keys while loading (transformers), the
    comparison that needs no names. `model` may live on the `meta` device."""
    seen, wanted = set(), Counter()
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            wanted[tuple(tensor.shape)] += 1
    held = Counter(tuple(s) for s in shapes.values())
    if wanted != held:
        claimed = sorted(wanted - held, key=lambda s: -_numel(s))
        details = f"first: {claimed[0]}" if claimed else f"it lacks {sorted(held - wanted)[0]}"
        raise InputError(
            f"the config describes {sum(map(_numel, wanted.elements())):,} parameters in "
            f"{sum(wanted.values())} tensors, but the weights hold "
            f"{sum(map(_numel, held.elements())):,} in {sum(held.values())}: they do not fit "
            f"{what} (a tensor shape the weights lack, {details})",
            path,
        )


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def build_checked(
    build: Callable[[str], torch.nn.Module],
    state: dict[str, torch.Tensor],
    path: Path,
    what: str,
) -> torch.nn.Module:
    """`build("cpu")` with `state` loaded strictly, after `build("meta")` (built on the
    `meta` device) matched `state`'s names and shapes: a mismatch allocates nothing.

    Raises:
        InputError: see `check_weights`.
    """
    try:
        with torch.device("meta"):
            skeleton = build("meta")
    except (ValueError, RuntimeError, TypeError, ZeroDivisionError, AssertionError) as exc:
        raise InputError(f"does not describe {what} that can be built: {exc}", path) from None
    check_weights(skeleton, shapes_of(state), path, what)
    model = build("cpu")
    model.load_state_dict(state, strict=True)
    return model


def inside(folder: Path, name: str, what: str) -> Path:
    """`folder / name`, a regular file that resolves inside `folder` (no separators or
    `..` in `name`, no link leading out).

    Raises:
        InputError: naming the folder and the file.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"{what} names {name!r}, not a file of this folder", folder)
    path = folder / name
    if folder.resolve() not in path.resolve().parents:
        raise InputError(
            f"{name} links outside the folder, to {path.resolve()}; copy the files in "
            "(`cp -rL`) so that every file read is inside the folder given",
            folder,
        )
    regular_file(path)
    return path


def check_folder(folder: Path) -> None:
    """Refuse a model folder holding a link that leads outside it (transformers opens
    files by name)."""
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    for entry in folder.iterdir():
        if entry.is_symlink():
            inside(folder, entry.name, "the folder")


@contextmanager
def offline() -> Iterator[None]:
    """The Hugging Face hub in offline mode for the block (environment and, when it is
    already imported, huggingface_hub's own switch): any download attempt fails."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - open_clip and transformers depend on it
        constants = None
    saved = {name: os.environ.get(name) for name in _OFFLINE}
    os.environ.update(dict.fromkeys(_OFFLINE, "1"))
    was = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = was
