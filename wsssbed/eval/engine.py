"""The sweep engine: stream images, reduce each to integer counts, add them up.

Decoding and (on the CPU) the per-image reduction run in `workers` processes; on CUDA the
workers decode and the reduction runs on the GPU. Either way each image becomes a small
`ImageResult` of integer counts, so memory does not grow with the number of images and
the totals are identical on every device and under any sharding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wsssbed.datasets.local import LocalDataset, labels_from_mask, read_label_list
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.boundary import (
    BoundaryCounts,
    ImageBoundaryScores,
    Tolerance,
    image_scores,
    sweep_boundary_counts,
)
from wsssbed.eval.confusion import class_counts, sparse_rows
from wsssbed.eval.histogram import PairCounts, PairHistogram, count_pairs
from wsssbed.eval.rules import HardLabels, Rule
from wsssbed.eval.sample import EvalSample
from wsssbed.maps import (
    list_activation_ids,
    list_png_ids,
    read_activation,
    read_label_map,
    read_saliency,
    validate_activation,
)


@dataclass
class SweepJob:
    """What to evaluate.

    Attributes:
        dataset: the split on disk.
        rule: the sweep rule (generator + grid), or `HardLabels` for label maps.
        activation: folder of activation maps (None for hard labels).
        activation_format: `irn-npy`, `png-per-class` or `npz`.
        saliency: folder of saliency PNGs, when the rule uses them.
        predictions: folder of label-map PNGs (hard labels).
        boundary: tolerance for boundary F, or None to skip it.
        labels: `masks` (image-level labels from the ground truth) or a label-list path.
        allow_extra: maps for images outside the split are allowed (a larger split's maps).
        device: `auto`, `cpu` or `cuda`.
        workers: decoding processes (0 = in the main process).
        images: also read each image's RGB picture (`EvalSample.image`).
        per_image: also keep each image's non-zero per-class counts at every point
            (for bootstrap intervals and split-half studies; see `SweepState.per_image`).
    """

    dataset: LocalDataset
    rule: Rule
    activation: Path | None = None
    activation_format: str = "irn-npy"
    saliency: Path | None = None
    predictions: Path | None = None
    boundary: Tolerance | None = None
    labels: str = "masks"
    allow_extra: bool = False
    device: str = "auto"
    workers: int = 0
    per_image: bool = False
    images: bool = False


@dataclass
class ImageResult:
    """One image reduced to counts (all on the CPU)."""

    image_id: str
    pairs: PairCounts
    boundary: BoundaryCounts | None = None
    boundary_scores: ImageBoundaryScores | None = None


@dataclass
class SweepState:
    """Additive state of a sweep: merges by summation across images, workers, machines."""

    bucket_shape: tuple[int, ...]
    num_points: int
    with_boundary: bool
    images: int = 0
    pairs: PairHistogram = field(init=False)
    boundary: BoundaryCounts | None = None
    bf_sums: np.ndarray = field(init=False)  # (3, T): sums of per-image F, P, R
    bf_images: np.ndarray = field(init=False)  # (T,): images with a defined score
    per_image: list[tuple[str, np.ndarray]] = field(default_factory=list)  # `sparse_rows`
    keep_image_scores: bool = False  # a shard: keep per-image BF scores for `merge`
    image_scores: list[np.ndarray] = field(default_factory=list)  # (3, T) each

    def __post_init__(self) -> None:
        self.pairs = PairHistogram(self.bucket_shape)
        self.bf_sums = np.zeros((3, self.num_points))
        self.bf_images = np.zeros(self.num_points, dtype=np.int64)

    def add(self, result: ImageResult) -> None:
        """Add one image."""
        self.images += 1
        self.pairs.add(result.pairs)
        if result.boundary is not None:
            self.boundary = (
                result.boundary if self.boundary is None else self.boundary + (result.boundary)
            )
            scores = result.boundary_scores
            stacked = np.stack([scores.f, scores.precision, scores.recall])
            if self.keep_image_scores:
                self.image_scores.append(stacked)
            else:
                self._add_scores(stacked)

    def _add_scores(self, stacked: np.ndarray) -> None:
        self.bf_sums += np.nan_to_num(stacked, nan=0.0)
        self.bf_images += ~np.isnan(stacked[0])

    def merge(self, shard: SweepState) -> None:
        """Add a shard's state (shards merged in split order give the local run's bits).

        Integer counts add in any order. Boundary-F score sums are floats, so a shard
        keeps its per-image scores (`keep_image_scores`) and they are added here one
        image at a time, in the same order as a local run adds them.
        """
        self.images += shard.images
        self.pairs.merge(shard.pairs)
        if shard.boundary is not None:
            self.boundary = (
                shard.boundary if self.boundary is None else self.boundary + shard.boundary
            )
        for stacked in shard.image_scores:
            self._add_scores(stacked)
        self.per_image.extend(shard.per_image)


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def _check_id_sets(
    folder: Path, found: set[str], ids: list[str], what: str, allow_extra: bool
) -> None:
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(ids)} images of the split have no {what} "
            f"(first: {', '.join(missing[:5])})",
            folder,
        )
    if not allow_extra:
        extra = sorted(found - set(ids))
        if extra:
            raise InputError(
                f"{len(extra)} {what} files are for images outside the split (first: "
                f"{', '.join(extra[:5])}); pass --allow-extra-maps when the maps cover a "
                "larger split (e.g. train_aug maps evaluated on train)",
                folder,
            )


class SweepInputs(Dataset):
    """Image i of the job: loads, validates and (when `reduce_on_load`) reduces it.

    Errors are returned, not raised, so a worker process hands back the `InputError`
    intact (with its file name) instead of a re-wrapped traceback.
    """

    def __init__(self, job: SweepJob, reduce_on_load: bool) -> None:
        self.job = job
        self.ids = job.dataset.ids
        self.reduce_on_load = reduce_on_load
        spec = job.dataset.spec
        self.keys: dict[str, tuple[int, ...] | None] = {}
        if job.rule.needs_maps:
            if job.activation is None:
                raise InputError("no activation folder given")
            self.keys = list_activation_ids(job.activation, job.activation_format)
            _check_id_sets(
                job.activation, set(self.keys), self.ids, "activation maps", job.allow_extra
            )
        elif job.rule.needs_predictions:
            if job.predictions is None:
                raise InputError("no prediction folder given")
            _check_id_sets(
                job.predictions,
                list_png_ids(job.predictions),
                self.ids,
                "label maps",
                job.allow_extra,
            )
        if job.rule.needs_saliency:
            if job.saliency is None:
                raise InputError(f"generator {job.rule.name} needs --saliency")
            _check_id_sets(
                job.saliency, list_png_ids(job.saliency), self.ids, "saliency maps", True
            )
        self.label_lists: dict[str, tuple[int, ...]] | None = None
        if job.labels != "masks":
            path = Path(job.labels)
            if not path.is_file():
                raise InputError("image-level label list not found", path)
            self.label_lists = read_label_list(path, spec)
            missing = [i for i in self.ids if i not in self.label_lists]
            if missing:
                raise InputError(
                    f"no image-level labels for {len(missing)} images "
                    f"(first: {', '.join(missing[:5])})",
                    path,
                )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> ImageResult | EvalSample | InputError:
        try:
            sample = self.load(self.ids[index])
            if not self.reduce_on_load:
                return sample
            return reduce_image(sample, self.job.rule, self.job.dataset.spec, self.job.boundary)
        except InputError as error:
            return error

    def load(self, image_id: str) -> EvalSample:
        """Read and validate every input of one image."""
        job = self.job
        spec = job.dataset.spec
        gt = job.dataset.read_gt(image_id)
        if self.label_lists is not None:
            labels = self.label_lists[image_id]
        else:
            labels = labels_from_mask(gt, spec)
        sample = EvalSample(image_id, torch.from_numpy(gt), torch.zeros(0, dtype=torch.int64))
        if job.rule.needs_maps:
            maps = read_activation(
                job.activation, image_id, job.activation_format, spec, self.keys.get(image_id)
            )
            where = (
                job.activation / image_id
                if job.activation_format == "png-per-class"
                else job.activation / f"{image_id}.{job.activation_format[-3:]}"
            )
            validate_activation(maps, gt.shape, labels, spec, where)
            sample.class_ids = torch.from_numpy(maps.class_ids)
            sample.cams = torch.from_numpy(maps.cams)
        elif job.rule.needs_predictions:
            pred = read_label_map(job.predictions, image_id)
            _validate_label_map(
                pred, gt.shape, spec.num_classes, job.predictions / f"{image_id}.png"
            )
            sample.pred = torch.from_numpy(pred)
        else:
            sample.class_ids = torch.tensor(labels, dtype=torch.int64)
        if job.rule.needs_saliency:
            saliency = read_saliency(job.saliency, image_id)
            if saliency.shape != gt.shape:
                raise InputError(
                    f"saliency size {saliency.shape} differs from the ground truth's {gt.shape}",
                    job.saliency / f"{image_id}.png",
                )
            sample.saliency = torch.from_numpy(saliency)
        if job.images:
            image = job.dataset.read_image(image_id)
            if image.shape[:2] != gt.shape:
                raise InputError(
                    f"image size {image.shape[:2]} differs from the ground truth's {gt.shape}",
                    job.dataset.image_path(image_id),
                )
            sample.image = torch.from_numpy(image)
        return sample


def _validate_label_map(
    pred: np.ndarray, shape: tuple[int, int], num_classes: int, path: Path
) -> None:
    if pred.shape != shape:
        raise InputError(
            f"label map size {pred.shape} differs from the ground truth's {shape}", path
        )
    bad = np.unique(pred[(pred >= num_classes) & (pred != 255)])
    if bad.size:
        raise InputError(
            f"label values {bad[:10].tolist()} are not classes of the dataset "
            f"(0..{num_classes - 1}, 255 = unlabelled)",
            path,
        )


def reduce_image(
    sample: EvalSample, rule: Rule, spec: DatasetSpec, boundary: Tolerance | None = None
) -> ImageResult:
    """One image -> integer counts (and boundary scores), computed on the sample's device."""
    k = spec.num_classes
    states = rule.states(sample, none_class=k)
    pairs = count_pairs(sample.gt, states, rule.bucket_shape, k)
    result = ImageResult(sample.image_id, PairCounts(pairs.codes.cpu(), pairs.hist.cpu()))
    if boundary is not None:
        height, width = sample.gt.shape
        counts = sweep_boundary_counts(
            states.best_id,
            rule.line_buckets(states),
            sample.gt,
            num_points=int(np.prod(rule.shape)),
            num_classes=k,
            background_label=0 if spec.has_background else k,
            theta=boundary.pixels(height, width),
        )
        result.boundary = counts
        result.boundary_scores = image_scores(counts)
    return result


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def iterate_results(job: SweepJob) -> Iterator[ImageResult]:
    """Yield each image's `ImageResult` in split order (raises the first `InputError`)."""
    device = resolve_device(job.device)
    on_cpu = device.type == "cpu"
    inputs = SweepInputs(job, reduce_on_load=on_cpu)
    if job.workers > 0:
        loader = DataLoader(
            inputs,
            batch_size=None,
            shuffle=False,
            num_workers=job.workers,
            worker_init_fn=_worker_init,
            prefetch_factor=4,
            pin_memory=not on_cpu,
        )
        items = iter(loader)
    else:
        items = (inputs[i] for i in range(len(inputs)))
    for item in items:
        if isinstance(item, InputError):
            raise item
        if isinstance(item, EvalSample):
            item = reduce_image(item.to(device), job.rule, job.dataset.spec, job.boundary)
        yield item


def accumulate(
    samples: Iterable[EvalSample],
    rule: Rule,
    spec: DatasetSpec,
    boundary: Tolerance | None = None,
    device: str = "cpu",
) -> SweepState:
    """Sweep in-memory samples (the Python API; no files involved)."""
    check_boundary(rule, boundary)
    target = resolve_device(device)
    state = SweepState(rule.bucket_shape, int(np.prod(rule.shape)), boundary is not None)
    for sample in samples:
        state.add(reduce_image(sample.to(target), rule, spec, boundary))
    return state


def check_boundary(rule: Rule, boundary: Tolerance | None) -> None:
    """Refuse boundary F on a grid it is not defined for."""
    if boundary is not None and not rule.supports_boundary:
        raise InputError(
            "boundary F is computed for 1-D sweeps (one saliency threshold and "
            "no ignore label for the saliency rule); drop --boundary or fix the "
            "grid"
        )


def run_sweep(
    job: SweepJob,
    progress: Callable[[int, int], None] | None = None,
    shard: bool = False,
) -> tuple[SweepState, float, str]:
    """Run a whole sweep.

    Args:
        progress: called as `progress(done, total)` after each image.
        shard: this is one shard of a distributed run (its state keeps per-image
            boundary scores for `SweepState.merge`).

    Returns:
        the summed state, wall time in seconds, and the device name used.
    """
    check_boundary(job.rule, job.boundary)
    device = resolve_device(job.device)
    state = SweepState(
        job.rule.bucket_shape,
        int(np.prod(job.rule.shape)),
        job.boundary is not None,
        keep_image_scores=shard,
    )
    spec = job.dataset.spec
    started = time.perf_counter()
    total = len(job.dataset.ids)
    for done, result in enumerate(iterate_results(job), start=1):
        state.add(result)
        if job.per_image:
            counts = class_counts(result.pairs, job.rule, spec.num_classes, spec.has_background)
            state.per_image.append((result.image_id, sparse_rows(counts)))
        if progress is not None:
            progress(done, total)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return state, time.perf_counter() - started, name


__all__ = [
    "HardLabels",
    "ImageResult",
    "SweepJob",
    "SweepState",
    "accumulate",
    "reduce_image",
    "run_sweep",
]
