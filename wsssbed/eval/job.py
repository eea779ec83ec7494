"""What a sweep evaluates: the job (protocol + inputs + execution settings) and its device."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wsssbed.activation.detect import AUTO, resolve_format
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError
from wsssbed.eval.boundary import Tolerance
from wsssbed.eval.rules import Rule

if TYPE_CHECKING:
    import torch

    from wsssbed.protocol import Protocol


@dataclass
class SweepJob:
    """What to evaluate.

    Attributes:
        dataset: the split on disk.
        rule: the sweep rule (generator + grid), or `HardLabels` for label maps.
        activation: folder of activation maps (None for hard labels).
        activation_format: a registered map format (`irn-npy`, `seam-npy`, `npz`, ...), or
            `auto`: the one the folder holds, recognised when the job is made
            (`wsssbed.activation.detect`), so the job and its run record a format.
        saliency: folder of saliency PNGs, when the rule uses them.
        predictions: folder of label-map PNGs (hard labels).
        boundary: tolerance for boundary F, or None to skip it.
        labels: `masks` (image-level labels from the ground truth) or a label-list path.
        allow_extra: maps for images outside the split are allowed (a larger split's maps).
        device: `auto`, `cpu` or `cuda`.
        workers: decoding processes (0 = in the main process; None = as many as the
            measured cost of the first images says pay, `eval.loop._items`).
        per_image: also keep each image's non-zero per-class counts at every point
            (for bootstrap intervals and split-half studies; see `SweepState.per_image`).
        images: also read each image's RGB picture (`EvalSample.image`).
        protocol: the protocol the job was built from (stored with the run), when known.
    """

    dataset: LocalDataset
    rule: Rule
    activation: Path | None = None
    activation_format: str = AUTO
    saliency: Path | None = None
    predictions: Path | None = None
    boundary: Tolerance | None = None
    labels: str = "masks"
    allow_extra: bool = False
    device: str = "auto"
    workers: int | None = 0
    per_image: bool = False
    images: bool = False
    protocol: Protocol | None = None

    def __post_init__(self) -> None:
        if self.activation is not None and self.rule.needs_maps:
            self.activation_format = resolve_format(self.activation, self.activation_format)

    @classmethod
    def from_protocol(cls, protocol: Protocol, dataset: LocalDataset, **inputs) -> SweepJob:
        """The job that runs `protocol` on `dataset` (`inputs`: the other attributes)."""
        return cls(
            dataset,
            protocol.rule,
            boundary=protocol.tolerance,
            labels=protocol.labels,
            protocol=protocol,
            **inputs,
        )


def default_workers() -> int:
    """Worker processes when they pay: one per core this process may use, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, cores or 1) if (cores or 1) > 1 else 0


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda was asked for, but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


GPU_NODES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/dxg", "/dev/kfd")


def on_cpu(name: str) -> bool:
    """Whether device `name` resolves to the CPU, without importing torch when no GPU
    driver is present (Linux: no NVIDIA, WSL or ROCm device node; macOS: torch has no
    CUDA). Otherwise `resolve_device` decides, and refuses what it refuses."""
    if name == "cpu":
        return True
    if name == "auto" and (
        sys.platform == "darwin"
        or (sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_NODES)))
    ):
        return True
    return resolve_device(name).type == "cpu"
