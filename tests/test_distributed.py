"""The Ray backend on a real local Ray cluster: bit-identical to the local backend, even
when a worker dies mid-task; errors and cancellations leave nothing behind."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

ray = pytest.importorskip("ray")

from ray_faults import killing  # noqa: E402

from wsssbed.datasets import get_dataset  # noqa: E402
from wsssbed.datasets.local import LocalDataset  # noqa: E402
from wsssbed.distributed import run_sweep_ray, start_local  # noqa: E402
from wsssbed.errors import InputError  # noqa: E402
from wsssbed.eval.boundary import Tolerance  # noqa: E402
from wsssbed.eval.job import SweepJob  # noqa: E402
from wsssbed.eval.loop import run_sweep, shard_ranges  # noqa: E402
from wsssbed.eval.rules import HardLabels, make_rule  # noqa: E402
from wsssbed.results.runs import compute_run  # noqa: E402

VOC = get_dataset("voc2012")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """A real local Ray cluster with 2 CPUs for the whole module, on loopback only."""
    start_local(num_cpus=2)
    yield
    ray.shutdown()


def _job(sample_root, rule, **kwargs):
    dataset = LocalDataset(VOC, sample_root, kwargs.pop("split", "train"))
    defaults = {
        "activation": sample_root / "activation/sample-cam/npz",
        "activation_format": "npz",
        "allow_extra": True,
        "device": "cpu",
        "per_image": True,
    }
    return SweepJob(dataset, rule, **{**defaults, **kwargs})


def _assert_identical(local, distributed):
    a, b = local.pairs.result(), distributed.pairs.result()
    assert local.images == distributed.images
    assert local.gt_digest is not None and local.gt_digest == distributed.gt_digest
    assert np.array_equal(a.codes, b.codes)
    assert np.array_equal(a.hist, b.hist)
    if local.boundary is not None:
        assert local.boundary.same_as(distributed.boundary)
    assert np.array_equal(local.bf_sums, distributed.bf_sums)  # floats, bit for bit
    assert np.array_equal(local.bf_images, distributed.bf_images)
    assert [i for i, _ in local.per_image] == [i for i, _ in distributed.per_image]
    assert all(
        np.array_equal(x, y) for (_, x), (_, y) in zip(local.per_image, distributed.per_image)
    )


@pytest.mark.parametrize(
    "rule,extra",
    [
        (make_rule("bg-threshold", {"threshold": [0.6, 0.05, 0.3, 0.0]}),
         {"boundary": Tolerance(0.0075)}),
        (make_rule("power-bg", {"alpha": [1.0, 4.0, 16.0]}), {"boundary": Tolerance(2, True)}),
        (make_rule("saliency-rule", {"threshold": [0.0, 0.2], "sal_threshold": [0.1, 0.3]},
                   ignore_label=True),
         {"saliency": "saliency/sample-sal"}),
    ],
    ids=["bg-threshold", "power-bg", "saliency-2d"],
)  # fmt: skip
def test_ray_equals_local_bit_for_bit(sample_root, rule, extra):
    if "saliency" in extra:
        extra = {**extra, "saliency": sample_root / extra["saliency"]}
    job = _job(sample_root, rule, **extra)
    local, _, _ = run_sweep(job)
    for shard_images in (5, 48):  # many shards finishing in any order, and one
        distributed, _, device = run_sweep_ray(job, shard_images=shard_images)
        assert device == "ray: cpu"
        _assert_identical(local, distributed)


def test_label_maps_through_ray(sample_root):
    rule = HardLabels("hard-labels", make_rule("bg-threshold", {"threshold": [0.0]}).axes)
    labels = sample_root / "VOC2012/SegmentationClass"
    job = _job(sample_root, rule, split="val", activation=None, predictions=labels,
               boundary=Tolerance(0.0075))  # fmt: skip
    local, _, _ = run_sweep(job)
    distributed, _, _ = run_sweep_ray(job, shard_images=7)
    _assert_identical(local, distributed)


def test_a_worker_killed_mid_task_is_retried_and_counts_stay_exact(sample_root, tmp_path):
    from dataclasses import replace

    marker = tmp_path / "killed"
    job = _job(sample_root, make_rule("bg-threshold", {"threshold": [0.1, 0.4]}),
               boundary=Tolerance(0.0075))  # fmt: skip
    distributed, _, _ = run_sweep_ray(
        replace(job, dataset=killing(job.dataset, marker)), shard_images=8
    )
    assert marker.exists()  # a worker process really died mid-shard
    killed = int(marker.read_text())
    assert (
        not Path(f"/proc/{killed}").exists()
        or "zombie" in Path(f"/proc/{killed}/status").read_text()
    )
    local, _, _ = run_sweep(job)
    _assert_identical(local, distributed)


def test_a_bad_map_in_a_shard_names_the_file_and_writes_nothing(sample_root, tmp_path):
    import shutil

    maps = tmp_path / "maps"
    shutil.copytree(sample_root / "activation/sample-cam/npz", maps)
    with np.load(maps / "sample_0030.npz") as archive:
        keys, cams = archive["keys"], archive["cams"]
    cams[0, 3, 3] = np.nan
    np.savez(maps / "sample_0030.npz", keys=keys, cams=cams)
    out = tmp_path / "results"
    job = _job(sample_root, make_rule("bg-threshold", {"threshold": [0.1]}), activation=maps)
    with pytest.raises(InputError, match="NaN") as info:
        compute_run(job, backend="ray").save(out)
    assert "sample_0030" in str(info.value)
    assert not out.exists() or not any(out.glob("*.parquet"))


def test_a_cancelled_run_stores_nothing(sample_root, tmp_path):
    out = tmp_path / "results"

    def interrupt(done, total):
        raise KeyboardInterrupt

    job = _job(sample_root, make_rule("bg-threshold", {"threshold": [0.1]}))
    with pytest.raises(KeyboardInterrupt):
        compute_run(job, progress=interrupt, backend="ray").save(out)
    assert not out.exists() or not any(out.glob("*.parquet"))


def test_cli_backend_ray_gives_the_local_tables(sample_root, tmp_path):
    tables = {}
    for backend in ("local", "ray"):
        out = tmp_path / backend
        result = run_cli(
            "sweep", "--data-root", sample_root, "--split", "train", "--backend", backend,
            "--activation", sample_root / "activation/sample-cam/irn-npy", "--allow-extra-maps",
            "--out", out, "--json", "--device", "cpu",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        tables[backend] = {n: pd.read_parquet(out / f"{n}.parquet").drop(columns="run_id")
                           for n in ("sweeps", "per_class")}  # fmt: skip
    for name in ("sweeps", "per_class"):
        pd.testing.assert_frame_equal(tables["local"][name], tables["ray"][name], check_exact=True)
    runs = pd.read_parquet(tmp_path / "ray/runs.parquet")
    assert runs.device.iloc[0] == "ray: cpu"


def test_shard_ranges_cover_every_image_once():
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(3, 64) == [(0, 3)]
    covered = [i for a, b in shard_ranges(1449, 64) for i in range(a, b)]
    assert covered == list(range(1449))


@pytest.mark.parametrize("kill", [False, True], ids=["plain", "worker-killed"])
def test_pseudo_labels_on_ray_are_the_local_files(sample_root, tmp_path, kill):
    from wsssbed.distributed import generate_ray
    from wsssbed.generators.base import make_generator
    from wsssbed.generators.writer import GenerationJob, finish, generate, start

    def job(out, dataset=LocalDataset(VOC, sample_root, "train")):
        return GenerationJob(dataset,
                             make_generator("saliency-rule"), out,
                             sample_root / "activation/sample-cam/npz", "npz",
                             sample_root / "saliency/sample-sal")  # fmt: skip

    local = job(tmp_path / "local")
    distributed = job(tmp_path / "ray")
    if kill:
        distributed = job(tmp_path / "ray", killing(local.dataset, tmp_path / "killed"))
    for j in (local, distributed):
        start(j)
    assert generate(local, local.dataset.ids) == (48, 0)
    written, skipped = generate_ray(distributed, shard_images=8)
    assert (written + skipped, tmp_path.joinpath("killed").exists()) == (48, kill)
    assert finish(local)["digest"] == finish(distributed)["digest"]
    for path in sorted(local.out.glob("*.png")):
        assert (distributed.out / path.name).read_bytes() == path.read_bytes()


def test_sam_refinement_on_ray_ships_the_recipe_not_the_model(sample_root, tmp_path):
    """Workers load the tiny SAM themselves (`ModelSlot` pickles without weights) and
    write the local run's files."""
    from foundation_fixtures import save_tiny_sam

    from wsssbed.distributed import generate_ray
    from wsssbed.generators.base import make_generator
    from wsssbed.generators.sam_refine import SamRefineGenerator
    from wsssbed.generators.writer import GenerationJob, finish, generate, start
    from wsssbed.models.options import SamOptions
    from wsssbed.models.sam_masks import MaskSettings

    sam = SamOptions(save_tiny_sam(tmp_path), masks=MaskSettings(4, -100.0, 0.0))
    split = LocalDataset(VOC, sample_root, "train")
    dataset = split.subset(split.ids[:12])
    cam_label = make_generator("bg-threshold", threshold=0.25)
    jobs = [GenerationJob(dataset, SamRefineGenerator(cam_label, sam), tmp_path / name,
                          sample_root / "activation/sample-cam/npz", "npz", device="cpu")
            for name in ("local", "ray")]  # fmt: skip
    for job in jobs:
        start(job)  # loads the model in this process
    assert len(pickle.dumps(jobs[1].generator)) < 10_000  # weights stay behind
    assert generate(jobs[0], dataset.ids) == (12, 0)
    assert generate_ray(jobs[1], shard_images=4) == (12, 0)
    assert finish(jobs[0])["digest"] == finish(jobs[1])["digest"]


def test_grounding_dino_boxes_on_ray_are_the_local_files(sample_root, tmp_path):
    """The detector -> SAM -> CRF pipeline: workers rebuild the detector and SAM from their
    recipes and write the local run's files."""
    from foundation_fixtures import save_tiny_grounding_dino, save_tiny_sam

    from wsssbed.distributed import generate_ray
    from wsssbed.generators.crf import CrfRefined
    from wsssbed.generators.sam_box import SamBoxGenerator
    from wsssbed.generators.writer import GenerationJob, finish, generate, start
    from wsssbed.models.options import DetectorOptions, SamOptions

    sam = SamOptions(save_tiny_sam(tmp_path))
    detector = DetectorOptions(save_tiny_grounding_dino(tmp_path / "gd"))
    split = LocalDataset(VOC, sample_root, "train")
    dataset = split.subset(split.ids[:8])
    jobs = [GenerationJob(dataset, CrfRefined(SamBoxGenerator(sam, detector=detector)),
                          tmp_path / name, device="cpu")
            for name in ("local", "ray")]  # fmt: skip
    for job in jobs:
        start(job)
    assert len(pickle.dumps(jobs[1].generator)) < 10_000  # weights stay behind
    assert generate(jobs[0], dataset.ids) == (8, 0)
    assert generate_ray(jobs[1], shard_images=3) == (8, 0)
    assert finish(jobs[0])["digest"] == finish(jobs[1])["digest"]
