"""Write a split's pseudo-labels: palette PNGs, resumable, never half-written.

`OUT/<id>.png` is written beside its final name and renamed (`write_label_map`), so an
interrupted run leaves only whole files and a second run skips them. `OUT/wsssbed.toml`
records what produced the labels (generator and settings, inputs, wsssbed version and
commit); a folder that holds labels of another configuration is refused rather than
mixed. When every image is done, the record gets the labels' count and digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomli_w

import wsssbed
from wsssbed.datasets.local import LocalDataset
from wsssbed.digest import folder_digest
from wsssbed.errors import InputError
from wsssbed.eval.engine import SweepInputs, SweepJob, resolve_device
from wsssbed.imageio import write_atomic
from wsssbed.maps import write_label_map
from wsssbed.provenance import git_commit
from wsssbed.pseudo.generators import PseudoLabelGenerator
from wsssbed.tomlio import read_toml

RECORD = "wsssbed.toml"


@dataclass
class PseudoLabelJob:
    """What to generate.

    Attributes:
        dataset: the split (its ground truth gives each image's size and, with
            `labels="masks"`, its image-level labels).
        generator: the pseudo-label generator.
        activation: folder of activation maps; `activation_format` their format.
        saliency: folder of saliency PNGs, for generators that use them.
        labels: `masks` or a label-list file (`image_id c1 c2 ...`).
        out: folder of the pseudo-labels.
        device: `auto`, `cpu` or `cuda`.
    """

    dataset: LocalDataset
    generator: PseudoLabelGenerator
    activation: Path
    activation_format: str
    out: Path
    saliency: Path | None = None
    labels: str = "masks"
    device: str = "cpu"

    def inputs(self) -> SweepInputs:
        """The sweep engine's loader: the same validation of every file."""
        job = SweepJob(
            self.dataset,
            self.generator.rule,
            activation=self.activation,
            activation_format=self.activation_format,
            saliency=self.saliency,
            labels=self.labels,
            allow_extra=True,
            device=self.device,
        )
        return SweepInputs(job, reduce_on_load=False)

    def record(self) -> dict:
        """The configuration that determines the labels (compared on resume)."""
        return {
            "dataset": self.dataset.spec.name,
            "split": self.dataset.split,
            "generator": self.generator.name,
            "settings": self.generator.params(),
            "activation": str(self.activation.resolve()),
            "activation_format": self.activation_format,
            "saliency": "" if self.saliency is None else str(self.saliency.resolve()),
            "labels": self.labels,
        }


def start(job: PseudoLabelJob) -> None:
    """Check the inputs and the output folder; write the record of the configuration."""
    job.inputs()  # every input folder is checked against the split before any work
    path = job.out / RECORD
    wanted = job.record()
    if path.exists():
        found = read_toml(path, "pseudo-label record")
        if found.get("configuration") != wanted:
            raise InputError(
                "this folder holds pseudo-labels of another configuration "
                f"({found.get('configuration')}); use a new --out",
                path,
            )
        return
    _write_record(path, {"configuration": wanted, "complete": False})


def generate(
    job: PseudoLabelJob, ids: list[str], progress: Callable[[int, int], None] | None = None
) -> tuple[int, int]:
    """Write the labels of `ids` that are not there yet; returns (written, skipped)."""
    inputs = job.inputs()
    device = resolve_device(job.device)
    spec = job.dataset.spec
    palette = spec.palette()
    written = skipped = 0
    for done, image_id in enumerate(ids, start=1):
        if (job.out / f"{image_id}.png").exists():
            skipped += 1
        else:
            sample = inputs.load(image_id).to(device)
            write_label_map(job.out, image_id, job.generator.labels(sample, spec), palette)
            written += 1
        if progress is not None:
            progress(done, len(ids))
    return written, skipped


def finish(job: PseudoLabelJob) -> dict:
    """Mark the folder complete with its labels' count and digest; returns the record."""
    found = folder_digest(job.out, "png")
    if found.files != len(job.dataset.ids):
        raise InputError(
            f"{found.files} label maps for {len(job.dataset.ids)} images; run again to finish",
            job.out,
        )
    record = {
        "configuration": job.record(),
        "complete": True,
        "files": found.files,
        "digest": found.digest,
        "wsssbed_version": wsssbed.__version__,
        "git_commit": git_commit() or "",
    }
    _write_record(job.out / RECORD, record)
    return record


def _write_record(path: Path, record: dict) -> None:
    text = tomli_w.dumps(record)
    write_atomic(path, lambda stream: stream.write(text.encode()))
