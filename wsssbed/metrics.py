"""`ThresholdSweep`: the sweep as a torchmetrics `Metric`, for training loops.

Needs torchmetrics (`pip install 'wsssbed[metrics]'`; the `dev` extra has it too).

    metric = ThresholdSweep(dataset="voc2012", thresholds="0:0.6:0.01")
    for images, gt, labels in loader:
        metric.update(model.cams(images), gt, labels)   # [B, C_fg, H, W], [B, H, W], [B, C_fg]
    points = metric.compute()                             # one row per threshold
    points.loc[points.miou.idxmax()]

The state is the sweep's integer histograms (pixels per ground-truth class, best class
and grid bucket; boundary-pixel counts) with `dist_reduce_fx="sum"`, so DDP gives exact
totals, and `compute()` equals `wsssbed.sweep` on the same maps bit for bit. Boundary-F
means are sums of per-image float scores: exact in one process, and equal to within
float rounding when states from several processes are summed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from wsssbed.errors import InputError
from wsssbed.io.extras import require
from wsssbed.protocol import Grid, build_protocol

Metric = require("torchmetrics", "metrics").Metric

_BOUNDARY_STATES = ("bf_pred", "bf_pred_matched", "bf_gt", "bf_gt_matched", "bf_sums", "bf_images")


class ThresholdSweep(Metric):
    """Every grid point of a generator's sweep, accumulated batch by batch.

    Args:
        dataset: built-in dataset name or spec `.toml` (classes, background, void).
        thresholds, sal_thresholds, alphas: the generator's grids (strings or sequences;
            defaults as `wsssbed.sweep`).
        generator: `bg-threshold` (default), `power-bg` or `saliency-rule`.
        ignore_label, without_saliency: the saliency rule's options.
        boundary: also accumulate boundary F (1-D grids only).
        boundary_tolerance: `0.0075` of the diagonal (default) or `2px`.
        kwargs: torchmetrics `Metric` options (`dist_sync_on_step`, `process_group`, ...).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        dataset: str = "voc2012",
        thresholds: Grid | None = None,
        generator: str | None = None,
        sal_thresholds: Grid | None = None,
        alphas: Grid | None = None,
        ignore_label: bool | None = None,
        without_saliency: bool | None = None,
        boundary: bool = False,
        boundary_tolerance: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from wsssbed.datasets import get_dataset

        self.protocol = build_protocol(
            dataset=dataset,
            generator=generator,
            thresholds=thresholds,
            sal_thresholds=sal_thresholds,
            alphas=alphas,
            ignore_label=ignore_label,
            with_saliency=None if without_saliency is None else not without_saliency,
            boundary=boundary,
            boundary_tolerance=boundary_tolerance,
        )
        if boundary and self.protocol.tolerance is None:
            raise InputError("boundary F is computed for 1-D grids only; set boundary=False")
        self.spec = get_dataset(dataset)
        self.rule = self.protocol.rule
        k = self.spec.num_classes
        points = int(np.prod(self.rule.shape))
        cells = int(np.prod(self.rule.bucket_shape))
        zeros = torch.zeros
        self.add_state("pairs", zeros(k * (k + 1), cells, dtype=torch.int64), "sum")
        self.add_state("images", zeros((), dtype=torch.int64), "sum")
        if self.protocol.tolerance is not None:
            for name in ("bf_pred", "bf_pred_matched", "bf_gt_matched"):
                self.add_state(name, zeros(k, points, dtype=torch.int64), "sum")
            self.add_state("bf_gt", zeros(k, dtype=torch.int64), "sum")
            self.add_state("bf_sums", zeros(3, points, dtype=torch.float64), "sum")
            self.add_state("bf_images", zeros(points, dtype=torch.int64), "sum")

    def update(
        self,
        cams: torch.Tensor,
        gt: torch.Tensor,
        labels: torch.Tensor,
        saliency: torch.Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            cams: [B, C_fg, H, W] float activation maps in [0, 1], one plane per
                foreground class (in dataset order).
            gt: [B, H, W] integer class ids (255 = void).
            labels: [B, C_fg] bool or 0/1 image-level labels; planes of other classes
                are ignored, as the map files' keys do.
            saliency: [B, H, W] saliency in [0, 1] (float) or 0..255 (uint8), for the
                saliency rule.
        """
        from wsssbed.eval.boundary import image_scores
        from wsssbed.eval.reduce import reduce_on_device

        spec, rule = self.spec, self.rule
        fg = spec.num_classes - spec.first_foreground
        if cams.dim() != 4 or cams.shape[1] != fg:
            raise InputError(f"cams must be [B, {fg}, H, W], got {list(cams.shape)}")
        if gt.shape != (cams.shape[0], *cams.shape[2:]):
            raise InputError(f"gt must be [B, H, W] = {[cams.shape[0], *cams.shape[2:]]}")
        if labels.shape != cams.shape[:2]:
            raise InputError(f"labels must be [B, {fg}], got {list(labels.shape)}")
        if rule.needs_saliency and saliency is None:
            raise InputError(f"{rule.name} needs `saliency` [B, H, W]")
        if not torch.isfinite(cams).all() or cams.min() < 0 or cams.max() > 1:
            raise InputError("cams must be finite and within [0, 1]")
        sal = None if saliency is None else _unit_saliency(saliency.to(self.device))
        tolerance = self.protocol.tolerance
        samples = []
        for b in range(cams.shape[0]):
            keys = labels[b].to(self.device).bool().nonzero().squeeze(1)
            samples.append(_sample(cams[b], gt[b], keys, sal, b, spec, self.device))
        for pairs, counts in reduce_on_device(samples, rule, spec, tolerance):
            self.pairs.index_add_(0, pairs.codes, pairs.hist.reshape(pairs.codes.numel(), -1))
            self.images += 1
            if counts is not None:
                self._add_boundary(counts, image_scores(counts))

    def _add_boundary(self, counts, scores) -> None:
        def add(state: torch.Tensor, values: np.ndarray) -> None:
            state += torch.from_numpy(np.asarray(values)).to(state.device, state.dtype)

        add(self.bf_pred, counts.pred_total)
        add(self.bf_pred_matched, counts.pred_matched)
        add(self.bf_gt, counts.gt_total)
        add(self.bf_gt_matched, counts.gt_matched)
        stacked = np.stack([scores.f, scores.precision, scores.recall])
        add(self.bf_sums, np.nan_to_num(stacked, nan=0.0))
        add(self.bf_images, ~np.isnan(stacked[0]))

    def compute(self) -> pd.DataFrame:
        """One row per grid point, the columns of `sweeps.parquet` (run_id `metric`)."""
        return self.tables()[0]

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(points, per_class) as `wsssbed.sweep` returns them."""
        from wsssbed.eval.boundary import BoundaryCounts
        from wsssbed.eval.histogram import PairCounts
        from wsssbed.eval.reduce import SweepState
        from wsssbed.eval.tables import sweep_tables

        rule = self.rule
        state = SweepState(
            rule.bucket_shape, int(np.prod(rule.shape)), self.protocol.tolerance is not None
        )
        pairs = self.pairs.cpu()
        present = pairs.sum(1).nonzero().squeeze(1)
        state.pairs.add(PairCounts(present, pairs[present].view(-1, *rule.bucket_shape)))
        state.images = int(self.images)
        if state.with_boundary:
            state.boundary = BoundaryCounts(
                *(getattr(self, n).cpu().numpy() for n in _BOUNDARY_STATES[:4])
            )
            state.bf_sums = self.bf_sums.cpu().numpy()
            state.bf_images = self.bf_images.cpu().numpy()
        return sweep_tables(state, rule, self.spec, "metric")


def _unit_saliency(saliency: torch.Tensor) -> torch.Tensor:
    """Saliency as float32 in [0, 1]; uint8 is divided by 255 in float32, as files are."""
    if saliency.dtype == torch.uint8:
        return saliency.to(torch.float32) / torch.tensor(255.0, dtype=torch.float32)
    if not torch.isfinite(saliency).all() or saliency.min() < 0 or saliency.max() > 1:
        raise InputError("saliency must be finite and within [0, 1]")
    return saliency.to(torch.float32)


def _sample(cams, gt, keys, saliency, index, spec, device):
    from wsssbed.eval.sample import EvalSample

    void = gt == spec.ignore_index
    if (gt < 0).any() or ((gt >= spec.num_classes) & ~void).any():
        raise InputError(
            f"gt must hold class ids 0..{spec.num_classes - 1} or {spec.ignore_index} (void)"
        )
    return EvalSample(
        str(index),
        gt.to(device, torch.uint8),
        keys + spec.first_foreground,
        cams.to(device).index_select(0, keys).to(torch.float32),
        None if saliency is None else saliency[index],
    )
