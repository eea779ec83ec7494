"""Write a generator's output for a split: resumable, never half-written.

Pseudo-labels are palette PNGs (255 = ignore), saliency maps 8-bit PNGs, activation
maps `npz` files (`OUTPUTS`). Each `OUT/<id>.<ext>` is written beside its final name and
renamed, so an interrupted run leaves only whole files and a second run skips them.
`OUT/wsssbed.toml` records what produced them (generator and settings, inputs, wsssbed
version and commit); a folder that holds output of another configuration is refused
rather than mixed, and so is a folder of anything but this command's output
(`wsssbed.io.ownership`). The writer never removes a file. When every image is done,
the record gets the files' count and digest.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import tomli_w
import torch

from wsssbed import __version__
from wsssbed.activation import digest_maps, read_activation, write_activation
from wsssbed.datasets.local import LocalDataset
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError, WsssbedError
from wsssbed.eval.inputs import SweepInputs
from wsssbed.eval.job import SweepJob, resolve_device
from wsssbed.eval.loop import shard_ranges, start_worker
from wsssbed.generators.base import Generator
from wsssbed.io.configio import read_toml
from wsssbed.io.imageio import picture_size, read_png_array, write_atomic, write_label_map
from wsssbed.io.ownership import OutputFolder
from wsssbed.io.provenance import git_commit
from wsssbed.saliency.maps import write_saliency

RECORD = "wsssbed.toml"
COMMANDS = {"labels": "pseudo-labels", "saliency": "saliency", "activation": "clip-activations"}


@dataclass(frozen=True)
class Output:
    """How one kind of output is stored: file extension and writer."""

    extension: str
    write: Callable[[Path, str, object, DatasetSpec], None]
    check: Callable[[Path, str, tuple[int, int], DatasetSpec], object]  # raises if damaged


OUTPUTS = {
    "labels": Output(
        "png",
        lambda out, i, v, spec: write_label_map(out, i, v, spec.palette()),
        lambda out, i, shape, spec: read_png_array(out / f"{i}.png", expected=shape),
    ),
    "saliency": Output(
        "png",
        lambda out, i, v, spec: write_saliency(out, i, v),
        lambda out, i, shape, spec: read_png_array(out / f"{i}.png", expected=shape),
    ),
    "activation": Output(
        "npz",
        lambda out, i, v, spec: write_activation(out, i, "npz", spec, v),
        lambda out, i, shape, spec: read_activation(out, i, "npz", spec, shape=shape),
    ),
}


@dataclass
class GenerationJob:
    """What to generate.

    Attributes:
        dataset: the split (its ground truth gives each image's size and, with
            `labels="masks"`, its image-level labels).
        generator: the generator.
        out: folder of the output.
        activation: folder of activation maps, for generators that read them;
            `activation_format` their format.
        saliency: folder of saliency PNGs, for generators that use them.
        predictions: folder of label maps, for generators that refine them.
        labels: `masks` or a label-list file (`image_id c1 c2 ...`).
        device: `auto`, `cpu` or `cuda`.
        command: the command that owns `out` (its `.wsssbed-output` marker); default:
            the one that writes this kind of output (`COMMANDS`).
    """

    dataset: LocalDataset
    generator: Generator
    out: Path
    activation: Path | None = None
    activation_format: str = "irn-npy"
    saliency: Path | None = None
    predictions: Path | None = None
    labels: str = "masks"
    device: str = "cpu"
    command: str | None = None

    @property
    def owner(self) -> str:
        """The command named in the output folder's marker."""
        return self.command or COMMANDS[self.generator.output]

    def inputs(self) -> SweepInputs:
        """The sweep engine's loader: the same validation of every file."""
        job = SweepJob(
            self.dataset,
            self.generator.rule,
            activation=self.activation,
            activation_format=self.activation_format,
            saliency=self.saliency,
            predictions=self.predictions,
            labels=self.labels,
            allow_extra=True,
            device=self.device,
            images=self.generator.needs_image,
        )
        return SweepInputs(job, reduce_on_load=False)

    def record(self) -> dict:
        """The configuration that determines the labels (compared on resume)."""
        return {
            "dataset": self.dataset.spec.name,
            "split": str(self.dataset.id_file or self.dataset.split),
            "generator": self.generator.name,
            "settings": self.generator.params(),
            "activation": "" if self.activation is None else str(self.activation.resolve()),
            "activation_format": "" if self.activation is None else self.activation_format,
            "saliency": "" if self.saliency is None else str(self.saliency.resolve()),
            **(
                {} if self.predictions is None else {"predictions": str(self.predictions.resolve())}
            ),
            "labels": self.labels,
        }


def start(job: GenerationJob) -> None:
    """Check the output folder, the inputs, the generator's models and prompts; write the
    record of the configuration. Nothing is generated before all of it passes.

    The output folder is claimed first (`wsssbed.io.ownership`): a new or empty folder,
    or one this command wrote before (its marker, or an older `wsssbed.toml` record);
    a folder of someone's files or another command's output is refused.
    """
    folder = OutputFolder.claim(job.out, job.owner, adopt=lambda root: (root / RECORD).is_file())
    job.inputs()  # every input folder is checked against the split before any work
    job.generator.prepare(job.dataset, resolve_device(job.device))
    path = job.out / RECORD
    wanted = job.record()
    if path.exists():
        found = read_toml(path, "pseudo-label record")
        if found.get("configuration") != wanted:
            raise InputError(
                "this folder holds output of another configuration "
                f"({found.get('configuration')}); use a new --out",
                path,
            )
    folder.open()
    if not path.exists():
        _write_record(path, {"configuration": wanted, "complete": False})


def generate(
    job: GenerationJob, ids: list[str], progress: Callable[[int, int], None] | None = None
) -> tuple[int, int]:
    """Write the output of the `ids` that are not there yet; returns (written, skipped).

    A file already there is skipped only when it decodes at the ground truth's size; a
    damaged one is generated again, with a warning.
    """
    inputs = job.inputs()
    device = resolve_device(job.device)
    spec = job.dataset.spec
    output = OUTPUTS[job.generator.output]
    written = skipped = 0
    for done, image_id in enumerate(ids, start=1):
        if _intact(job, output, image_id):
            skipped += 1
        else:
            sample = inputs.load(image_id).to(device)
            output.write(job.out, image_id, job.generator.produce(sample, spec), spec)
            written += 1
        if progress is not None:
            progress(done, len(ids))
    return written, skipped


def generate_shard(job: GenerationJob, ids: list[str]) -> tuple[int, int] | InputError:
    """`generate` for one shard in a worker (a process or a Ray task): an `InputError`
    comes back as a value, so the caller stops the run with the file's name."""
    try:
        return generate(job, ids)
    except InputError as error:
        return error


def generate_parallel(
    job: GenerationJob,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    shard_images: int = 8,
) -> tuple[int, int]:
    """`generate` over the whole split in `workers` spawned processes, each loading the
    models once from the generator's recipes and taking shards of `shard_images` images;
    the CPU's threads are shared out between them. Returns (written, skipped)."""
    ids = job.dataset.ids
    ranges = shard_ranges(len(ids), shard_images)
    threads = max(1, torch.get_num_threads() // workers)
    written = skipped = done = 0
    context = multiprocessing.get_context("spawn")  # torch's threads do not survive fork
    with ProcessPoolExecutor(workers, context, start_worker, (os.getpid(), threads)) as pool:
        pending = {pool.submit(generate_shard, job, ids[a:b]): b - a for a, b in ranges}
        try:
            for future in as_completed(pending):
                outcome = future.result()
                if isinstance(outcome, InputError):
                    raise outcome
                written, skipped, done = (
                    written + outcome[0],
                    skipped + outcome[1],
                    done + pending[future],
                )
                if progress is not None:
                    progress(done, len(ids))
        except BrokenProcessPool as exc:
            raise WsssbedError(f"a generating process died ({exc}); run again to resume") from exc
        finally:
            pool.shutdown(cancel_futures=True)
    return written, skipped


def _intact(job: GenerationJob, output: Output, image_id: str) -> bool:
    """Whether an earlier run's file for `image_id` exists and reads back whole."""
    path = job.out / f"{image_id}.{output.extension}"
    if not path.exists():
        return False
    try:
        shape = picture_size(job.dataset.gt_path(image_id))
        output.check(job.out, image_id, shape, job.dataset.spec)
    except InputError as error:
        warnings.warn(f"{path}: {error.problem}; generating it again", stacklevel=2)
        return False
    return True


def finish(job: GenerationJob) -> dict:
    """Mark the folder complete with its files' count and digest; returns the record."""
    found = digest_maps(job.out, OUTPUTS[job.generator.output].extension)
    if found.files != len(job.dataset.ids):
        raise InputError(
            f"{found.files} output files for {len(job.dataset.ids)} images; run again to finish",
            job.out,
        )
    record = {
        "configuration": job.record(),
        "complete": True,
        "files": found.files,
        "digest": found.digest,
        "wsssbed_version": __version__,
        "git_commit": git_commit() or "",
    }
    _write_record(job.out / RECORD, record)
    return record


def _write_record(path: Path, record: dict) -> None:
    text = tomli_w.dumps(record)
    write_atomic(path, lambda stream: stream.write(text.encode()))
