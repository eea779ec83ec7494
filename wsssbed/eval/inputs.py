"""Reading and validating one image's inputs for a sweep job (maps, saliency, labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsssbed.activation import map_format, validate_activation
from wsssbed.datasets.colours import colour_coded_error
from wsssbed.datasets.fingerprint import image_hash
from wsssbed.datasets.local import labels_from_mask, read_label_list
from wsssbed.errors import ColourImageError, InputError
from wsssbed.eval.fused import FusedImage, FusedPlan, reduce_fused
from wsssbed.eval.job import SweepJob
from wsssbed.eval.reduce import ImageResult, reduce_image
from wsssbed.eval.sample import EvalSample
from wsssbed.io.imageio import list_png_ids, read_label_map
from wsssbed.saliency.maps import read_saliency


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
                f"{', '.join(extra[:5])}); set `allow_extra_maps` when the maps cover a "
                "larger split (e.g. train_aug maps evaluated on train)",
                folder,
            )


class SweepInputs:
    """Image i of the job: loads, validates and (when `reduce_on_load`) reduces it, by the
    fused path (`eval/fused.py`) when the job allows it.

    Errors are returned, not raised, so a worker process hands back the `InputError`
    intact (with its file name) instead of a re-wrapped traceback. A map-style dataset
    for torch's `DataLoader` (`__len__`, `__getitem__`), without importing torch.
    """

    def __init__(self, job: SweepJob, reduce_on_load: bool) -> None:
        self.job = job
        self.ids = job.dataset.ids
        self.reduce_on_load = reduce_on_load
        spec = job.dataset.spec
        self.keys: dict[str, tuple[int, ...] | None] = {}
        job.dataset.check_masks()  # one folder listing: a missing mask fails before any work
        # an id file picks part of a split on purpose: maps of the rest are expected
        allow_extra = job.allow_extra or job.dataset.id_file is not None
        if job.rule.needs_maps:
            if job.activation is None:
                raise InputError("no activation folder given")
            fmt = map_format(job.activation_format)
            self.keys = fmt.list_ids(job.activation)
            _check_id_sets(
                job.activation,
                set(self.keys),
                self.ids,
                f"activation maps ({fmt.pattern})",
                allow_extra,
            )
        elif job.rule.needs_predictions:
            if job.predictions is None:
                raise InputError("no prediction folder given")
            _check_id_sets(
                job.predictions,
                list_png_ids(job.predictions),
                self.ids,
                "label maps (<id>.png)",
                allow_extra,
            )
        if job.rule.needs_saliency:
            if job.saliency is None:
                raise InputError(f"generator {job.rule.name} needs --saliency")
            _check_id_sets(
                job.saliency, list_png_ids(job.saliency), self.ids, "saliency maps (<id>.png)", True
            )
        self.label_lists: dict[str, tuple[int, ...]] | None = None
        self.fused = FusedPlan.build(job) if reduce_on_load else None
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

    def __getitem__(self, index: int) -> ImageResult | FusedImage | EvalSample | InputError:
        try:
            if self.fused is not None:
                return reduce_fused(self, self.ids[index])
            sample = self.load(self.ids[index])
            if not self.reduce_on_load:
                return sample
            return reduce_image(sample, self.job.rule, self.job.dataset.spec, self.job.boundary)
        except InputError as error:
            return error

    def load(self, image_id: str) -> EvalSample:
        """Read and validate every input of one image."""
        import torch

        job = self.job
        spec = job.dataset.spec
        gt = job.dataset.read_gt(image_id)
        if self.label_lists is not None:
            labels = self.label_lists[image_id]
        else:
            labels = labels_from_mask(gt, spec)
        sample = EvalSample(
            image_id,
            torch.from_numpy(gt),
            torch.zeros(0, dtype=torch.int64),
            gt_hash=image_hash(gt),
        )
        if job.rule.needs_maps:
            fmt = map_format(job.activation_format)
            maps = fmt.read(job.activation, image_id, spec, self.keys.get(image_id), gt.shape)
            where = fmt.where(job.activation, image_id)
            validate_activation(maps, gt.shape, labels, spec, where)
            sample.class_ids = torch.from_numpy(maps.class_ids)
            sample.cams = torch.from_numpy(maps.cams)
        elif job.rule.needs_predictions:
            try:
                pred = read_label_map(job.predictions, image_id, gt.shape)
            except ColourImageError as error:
                raise colour_coded_error(error.path, spec, "a label map") from None
            _validate_label_map(
                pred, gt.shape, spec.num_classes, job.predictions / f"{image_id}.png"
            )
            sample.pred = torch.from_numpy(pred)
        else:
            sample.class_ids = torch.tensor(labels, dtype=torch.int64)
        if job.rule.needs_saliency:
            sample.saliency = torch.from_numpy(read_saliency(job.saliency, image_id, gt.shape))
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
