"""Qualitative gallery: image, ground truth and pseudo-label at a run's chosen point.

Label maps come from `wsssbed.eval.rules.label_map`, the per-pixel states the sweep
counted, so a picture shows exactly what the numbers measured. Tiles are PNG data URIs
(the site stays one folder, readable from file://) and are deterministic.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from wsssbed.datasets import spec_of_run
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import WsssbedError
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob
from wsssbed.eval.rules import Rule, label_map, make_rule

TILE_WIDTH = 240
OVERLAY_ALPHA = 0.6


@dataclass(frozen=True)
class GalleryRow:
    """One image's three tiles as `data:image/png;base64,...` URIs."""

    image_id: str
    image: str
    ground_truth: str
    pseudo_label: str


def rule_of(run: pd.Series) -> Rule:
    """The sweep rule a stored run used, rebuilt from its `generator` and `grid`."""
    grid = json.loads(run.grid)
    return make_rule(
        run.generator,
        grid,
        ignore_label=bool(run.ignore_label),
        with_saliency="sal_threshold" in grid,
    )


def _data_uri(array: np.ndarray) -> str:
    image = Image.fromarray(array)
    if image.width > TILE_WIDTH:
        height = round(image.height * TILE_WIDTH / image.width)
        image = image.resize((TILE_WIDTH, height), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _colour(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours of a label map (255 = white: void / unlabelled)."""
    colours = np.full((256, 3), 255, dtype=np.uint8)
    colours[: len(palette)] = palette
    return colours[labels]


def gallery(run: pd.Series, point: int, count: int) -> list[GalleryRow]:
    """Up to `count` rows for a stored activation run, or [] when its inputs are gone.

    Only runs over activation maps have a gallery (hard label maps are shown as given).
    """
    if count <= 0 or pd.isna(run.activation) or pd.isna(run.data_root):
        return []
    spec = spec_of_run(run)
    try:
        split = run.split_file if pd.notna(run.get("split_file")) else run.split
        dataset = LocalDataset(spec, Path(run.data_root), split)
        rule = rule_of(run)
        job = SweepJob(
            dataset,
            rule,
            activation=Path(run.activation),
            activation_format=run.activation_format,
            saliency=None if pd.isna(run.saliency) else Path(run.saliency),
            labels=run.labels,
            allow_extra=True,
        )
        inputs = SweepInputs(job, reduce_on_load=False)
    except WsssbedError:
        return []  # the maps or the dataset are not on this machine
    palette = np.asarray(spec.palette(), dtype=np.uint8).reshape(-1, 3)
    rows = []
    for image_id in sorted(dataset.ids)[:count]:
        picture = dataset.image_path(image_id)
        if picture is None or not picture.is_file():
            continue
        sample = inputs.load(image_id)
        labels = label_map(rule, sample, point, spec.num_classes, spec.has_background).numpy()
        rgb = np.asarray(Image.open(picture).convert("RGB"))
        if rgb.shape[:2] != labels.shape:
            continue
        coloured = _colour(labels, palette).astype(np.float32)
        overlay = np.where(
            (labels == 255)[..., None], rgb, (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * coloured
        )
        rows.append(
            GalleryRow(
                image_id,
                _data_uri(rgb),
                _data_uri(_colour(sample.gt.numpy(), palette)),
                _data_uri(np.rint(overlay).astype(np.uint8)),
            )
        )
    return rows
