"""Qualitative gallery: image, ground truth and prediction at a run's chosen point.

Label maps come from `wsssbed.eval.rules.label_map`, the per-pixel states the sweep
counted, so a picture shows exactly what the numbers measured. Tiles are PNG data URIs
(the site stays one folder, readable from file://) and are deterministic.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from wsssbed.datasets import spec_of_run
from wsssbed.datasets.local import LocalDataset
from wsssbed.errors import InputError, WsssbedError
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob
from wsssbed.eval.rules import Rule, hard_labels, label_map, make_rule
from wsssbed.io.imageio import read_rgb

TILE_WIDTH = 240
OVERLAY_ALPHA = 0.6


POOL = 200  # images ranked by per-image IoU (the first, in id order, that have pictures)


@dataclass(frozen=True)
class GalleryRow:
    """One image's three tiles as `data:image/png;base64,...` URIs, and its caption.

    Attributes:
        rank: `best`, `median`, `worst`, or `rank r of n` by per-image mIoU.
        miou: the image's mean IoU at the shown point (classes with a non-zero union).
    """

    image_id: str
    rank: str
    miou: float
    image: str
    ground_truth: str
    prediction: str


@dataclass(frozen=True)
class Gallery:
    """The rows, the colours they use (class name, `#rrggbb`), and how many were ranked;
    without rows, `missing` says why (the page shows it instead of a gallery)."""

    rows: list[GalleryRow]
    legend: list[tuple[str, str]]
    ranked: int
    missing: str = ""


ShowPath = Callable[[str], str]  # how the page shows a local path (`report.paths`)


def _problem(error: WsssbedError, show: ShowPath) -> str:
    """An error in the page's words, its path shown by `show`."""
    if isinstance(error, InputError):
        where = f" ({show(str(error.path))})" if error.path is not None else ""
        return error.problem + where
    return str(error)


def image_miou(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean IoU of one image over classes with a non-zero union (void pixels ignored;
    an unlabelled prediction is a miss)."""
    valid = gt != 255
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    p = np.where(p == 255, num_classes, p)
    conf = np.bincount(g * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    conf = conf.reshape(num_classes, num_classes + 1)
    tp = np.diag(conf[:, :num_classes]).astype(float)
    union = conf.sum(1) + conf[:, :num_classes].sum(0) - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")


def pick_ranks(count: int, total: int) -> list[tuple[int, str]]:
    """Which ranks (0 = best) to show: best, median and worst first, then evenly spaced."""
    if total == 0 or count <= 0:
        return []
    named = {0: "best", total // 2: "median", total - 1: "worst"}
    chosen = list(dict.fromkeys([0, total // 2, total - 1]))[:count]
    for rank in np.linspace(0, total - 1, count + 2).round().astype(int).tolist():
        if len(chosen) >= count:
            break
        if rank not in chosen:
            chosen.append(rank)
    return [(r, named.get(r, f"rank {r + 1} of {total}")) for r in sorted(chosen)]


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


def _inputs(run: pd.Series, spec, show: ShowPath) -> tuple[LocalDataset, Rule, SweepInputs] | str:
    """The run's dataset, rule and loader, or why they are not on this machine."""
    if pd.isna(run.data_root) or (pd.isna(run.activation) and pd.isna(run.predictions)):
        return "the run did not record where its ground truth and maps are"
    try:
        split = run.split_file if pd.notna(run.get("split_file")) else run.split
        dataset = LocalDataset(spec, Path(run.data_root), split)
        if pd.notna(run.predictions):
            rule: Rule = hard_labels()
            job = SweepJob(dataset, rule, predictions=Path(run.predictions), allow_extra=True)
        else:
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
        return dataset, rule, SweepInputs(job, reduce_on_load=False)
    except WsssbedError as error:
        return f"its inputs are not on this machine as recorded: {_problem(error, show)}"


def gallery(run: pd.Series, point: int, count: int, show: ShowPath = str) -> Gallery | None:
    """Up to `count` images of a stored run at grid point `point`, chosen by per-image
    mIoU (best, median, worst, then evenly between) among the first `POOL` images that
    have pictures; None for `count` 0. When the run's inputs or pictures are not on this
    machine, the gallery has no rows and says why (paths shown by `show`). Works for
    swept maps and for evaluated label maps alike."""
    if count <= 0:
        return None
    spec = spec_of_run(run)
    found = _inputs(run, spec, show)
    if isinstance(found, str):
        return Gallery([], [], 0, found)
    dataset, rule, inputs = found
    if dataset.image_folder is None:
        tried = ", ".join(spec.images)
        return Gallery([], [], 0, f"the data root {show(str(run.data_root))} has no pictures "
                                  f"(looked for {tried})")  # fmt: skip
    k, background = spec.num_classes, spec.has_background
    scored = []
    try:
        for image_id in sorted(dataset.ids):
            picture = dataset.image_path(image_id)
            if picture is None or not picture.is_file():
                continue
            sample = inputs.load(image_id)
            labels = label_map(rule, sample, point, k, background).numpy()
            scored.append((image_miou(sample.gt.numpy(), labels, k), image_id))
            if len(scored) == POOL:
                break
    except WsssbedError as error:
        return Gallery([], [], 0, f"reading the run's inputs failed: {_problem(error, show)}")
    if not scored:
        folder = show(str(dataset.image_folder))
        return Gallery([], [], 0, f"none of the {len(dataset.ids):,} images has a picture in "
                                  f"{folder}")  # fmt: skip
    scored.sort(key=lambda item: (-np.nan_to_num(item[0], nan=-1.0), item[1]))
    palette = np.asarray(spec.palette(), dtype=np.uint8).reshape(-1, 3)
    rows, shown = [], set()
    for rank, name in pick_ranks(count, len(scored)):
        miou, image_id = scored[rank]
        sample = inputs.load(image_id)
        labels = label_map(rule, sample, point, k, background).numpy()
        gt = sample.gt.numpy()
        rgb = read_rgb(dataset.image_path(image_id))
        if rgb.shape[:2] != labels.shape:
            continue  # a picture that does not match its mask: nothing honest to show
        coloured = _colour(labels, palette).astype(np.float32)
        overlay = np.where(
            (labels == 255)[..., None], rgb, (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * coloured
        )
        shown |= set(np.unique(gt).tolist()) | set(np.unique(labels).tolist())
        rows.append(
            GalleryRow(
                image_id,
                name,
                miou,
                _data_uri(rgb),
                _data_uri(_colour(gt, palette)),
                _data_uri(np.rint(overlay).astype(np.uint8)),
            )
        )
    if not rows:
        return Gallery([], [], len(scored), "no picture chosen has the size of its mask")
    legend = [(spec.classes[c], "#" + bytes(palette[c]).hex()) for c in sorted(shown) if c < k]
    return Gallery(rows, [*legend, ("void / unlabelled", "#ffffff")], len(scored))
