"""`wsssbed boxes`: Grounding DINO's boxes for a split, written as the boxes JSON that
`sam-box --boxes FILE` reads (`models/boxes.py`), with each box's phrase beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from wsssbed.datasets.local import LocalDataset
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob, resolve_device
from wsssbed.eval.rules import PictureOnly
from wsssbed.io.imageio import write_atomic
from wsssbed.io.outputs import check_output_file
from wsssbed.models.options import DetectorOptions


def detect_boxes(
    dataset: LocalDataset,
    options: DetectorOptions,
    labels: str = "masks",
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[dict]]:
    """Every image's boxes: `{id: [{"box", "label", "score", "phrase"}]}`, at full
    precision (JSON keeps every float exactly, so the file prompts SAM as the run did).

    Args:
        dataset: the split; its pictures are read, and with `labels="masks"` its masks
            give the image-level labels that `prompt="labels"` prompts with.
        options: the detector and its thresholds.
        labels: `masks` or a label-list file.
        device: `auto`, `cpu` or `cuda`.
        progress: called with (done, total) after each image.

    Raises:
        InputError: a missing picture, bad weights, or a class name the detector cannot
            read (before any image is done).
    """
    spec = dataset.spec
    job = SweepJob(dataset, PictureOnly("boxes", ()), labels=labels, allow_extra=True,
                   device=device, images=True)  # fmt: skip
    inputs = SweepInputs(job, reduce_on_load=False)
    detector = options.slot().get(resolve_device(device))
    detector.check_names(list(spec.foreground_names), options.weights)
    found = {}
    for done, image_id in enumerate(dataset.ids, start=1):
        sample = inputs.load(image_id)
        boxes = options.detect(detector, sample.image.numpy(), sample.class_ids.tolist(), spec)
        found[image_id] = [
            {
                "box": [box.x0, box.y0, box.x1, box.y1],
                "label": None if box.class_id is None else spec.classes[box.class_id],
                "score": box.score,
                "phrase": phrase,
            }
            for box, phrase in boxes
        ]
        if progress is not None:
            progress(done, len(dataset.ids))
    return found


def write_boxes(path: Path, boxes: dict[str, list[dict]]) -> None:
    """Write the boxes JSON whole or not at all."""
    check_output_file(path, "boxes JSON")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(boxes, indent=1)
    write_atomic(path, lambda stream: stream.write(text.encode()))
