"""Dense CRF refinement of a label map (`--refine crf`), on pydensecrf2's `DenseCRF2D`.

The unary comes from the label map as IRN's `crf_inference_label` builds it
(`unary_from_labels` with `gt_prob` 0.7); the pairwise terms are IRN's too: a Gaussian
(`sxy` 3, `compat` 3) and a bilateral (`sxy` 50, `srgb` 5, `compat` 10), 10 mean-field
steps (jiwoon-ahn/irn, `misc/imutils.py`). PSA's `crf_inference` uses the same Gaussian
with a wider bilateral (`sxy` 80, `srgb` 13); both are one `CrfSettings` away.

Only the classes present in the map take part (IRN passes the image's labels the same
way). Ignored pixels (255) get a uniform unary, so the CRF decides them from their
neighbours, and stay 255 in the output: ignoring a pixel is the generator's decision,
not the CRF's.

pydensecrf2 compiles from source (a C++ compiler, a few minutes): it is the `crf` extra.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.eval.rules import Rule
from wsssbed.eval.sample import EvalSample


@dataclass(frozen=True)
class CrfSettings:
    """DenseCRF2D parameters (defaults: IRN's `crf_inference_label`)."""

    steps: int = 10
    gt_prob: float = 0.7
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0


def _densecrf():
    try:
        import pydensecrf.densecrf as densecrf
        import pydensecrf.utils as utils
    except ImportError as exc:
        raise InputError(
            "--refine crf needs pydensecrf2 (it compiles with a C++ compiler): "
            "pip install 'wsssbed[crf]'"
        ) from exc
    return densecrf, utils


def crf_refine(image: np.ndarray, labels: np.ndarray, settings: CrfSettings) -> np.ndarray:
    """Refine a label map with a dense CRF over its picture.

    Args:
        image: (H, W, 3) uint8 RGB picture.
        labels: (H, W) uint8 class ids, 255 = ignore.
        settings: the CRF's parameters.

    Returns:
        (H, W) uint8 refined labels; pixels that were 255 stay 255.
    """
    densecrf, utils = _densecrf()
    present = np.unique(labels[labels != 255])
    if present.size < 2:
        return labels.copy()  # one class or none: nothing to decide between
    height, width = labels.shape
    compact = np.zeros(labels.shape, dtype=np.int64)  # 0 = unsure (the ignored pixels)
    compact[labels != 255] = np.searchsorted(present, labels[labels != 255]) + 1
    crf = densecrf.DenseCRF2D(width, height, present.size)
    unary = utils.unary_from_labels(compact, present.size, gt_prob=settings.gt_prob,
                                    zero_unsure=True)  # fmt: skip
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=settings.gaussian_sxy, compat=settings.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=settings.bilateral_sxy,
        srgb=settings.bilateral_srgb,
        rgbim=np.ascontiguousarray(image, dtype=np.uint8),
        compat=settings.bilateral_compat,
    )
    marginals = np.asarray(crf.inference(settings.steps)).reshape(present.size, height, width)
    refined = present[np.argmax(marginals, axis=0)].astype(np.uint8)
    refined[labels == 255] = 255
    return refined


@dataclass
class CrfRefined:
    """Any label generator followed by `crf_refine` over the picture.

    Attributes:
        base: the generator whose labels are refined.
        settings: the CRF's parameters (recorded with the labels).
    """

    base: object
    settings: CrfSettings = CrfSettings()
    output = "labels"
    needs_image = True

    def __post_init__(self) -> None:
        if getattr(self.base, "output", "labels") != "labels":
            raise InputError(f"--refine crf refines label maps, not {self.base.output}")

    @property
    def name(self) -> str:
        return f"{self.base.name}+crf"

    @property
    def rule(self) -> Rule:
        return self.base.rule

    def params(self) -> dict:
        crf = {f"crf_{key}": value for key, value in asdict(self.settings).items()}
        return {**self.base.params(), "refine": "crf", **crf}

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        _densecrf()  # a missing engine fails before any work
        self.base.prepare(dataset, device)

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        labels = self.base.produce(sample, spec)
        return crf_refine(sample.image.cpu().numpy(), labels, self.settings)


@dataclass(frozen=True)
class GivenLabels:
    """Label maps already on disk (`wsssbed refine --pred`), passed through as they are."""

    name = "label-maps"
    output = "labels"
    needs_image = False

    @property
    def rule(self) -> Rule:
        from wsssbed.eval.rules import hard_labels

        return hard_labels()

    def params(self) -> dict:
        return {}

    def prepare(self, dataset: LocalDataset, device: torch.device) -> None:
        """The engine's loader checks the label maps."""

    def produce(self, sample: EvalSample, spec: DatasetSpec) -> np.ndarray:
        return sample.pred.cpu().numpy()
