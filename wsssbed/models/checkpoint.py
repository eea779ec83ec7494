"""Read model weights from a user's file, safely: tensors only, never arbitrary pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from wsssbed.errors import InputError


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on the CPU.

    `.safetensors` files are read with safetensors; anything else with
    `torch.load(weights_only=True)`, which refuses pickled code. A state dict nested under
    `state_dict` or `model` (training checkpoints) is unwrapped, and a `module.` prefix
    (DataParallel) is dropped.

    Args:
        path: the checkpoint the user gave.
        what: the model it should hold, for messages ("a SAM checkpoint").

    Raises:
        InputError: missing file, unreadable file, or no tensors in it.
    """
    if not path.is_file():
        raise InputError(f"{what} not found (weights are never downloaded: give a local file)",
                         path)  # fmt: skip
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(str(path), device="cpu")
        else:
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


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str):
    """Copy `state` into `model`, strictly; a mismatch is an error naming the file.

    Raises:
        InputError: missing or unexpected keys, or tensors of another shape (a checkpoint
            of another model or model size).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        details = []
        if reshaped:
            details.append(f"{len(reshaped)} tensors of another shape (first: {reshaped[0]})")
        if missing:
            details.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise InputError(f"does not fit {what}: {'; '.join(details)}", path)
    model.load_state_dict(state, strict=True)
