"""The Python API (`wsssbed.sweep`, `evaluate`, `read_results`, `Protocol`): the CLI's
numbers from a notebook, str paths, `method=`, one precedence, errors that name things."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import run_cli

import wsssbed
from wsssbed.errors import InputError
from wsssbed.protocol import Protocol, build_protocol


def _tables(folder):
    return {n: pd.read_parquet(folder / f"{n}.parquet").drop(columns="run_id")
            for n in ("sweeps", "per_class")}  # fmt: skip


def test_three_lines_in_a_notebook_give_the_clis_numbers(sample_root, tmp_path):
    maps = str(sample_root / "activation/sample-cam/irn-npy")  # a str, not a Path
    result = wsssbed.sweep(data_root=str(sample_root), split="val", activation=maps,
                           allow_extra_maps=True, out=str(tmp_path / "api"),
                           device="cpu")  # fmt: skip
    best = result.best
    assert 0 < best.miou < 1 and best.threshold in result.points.threshold.tolist()
    assert best.miou == result.points.miou.max() and pd.notna(best.bf_f)  # BF on, as the CLI

    cli = run_cli("sweep", "--data-root", sample_root, "--split", "val", "--activation", maps,
                  "--allow-extra-maps", "--out", tmp_path / "cli", "--device", "cpu")  # fmt: skip
    assert cli.exit_code == 0, cli.stderr
    api, by_cli = _tables(tmp_path / "api"), _tables(tmp_path / "cli")
    for name in api:
        pd.testing.assert_frame_equal(api[name], by_cli[name], check_exact=True)
    pd.testing.assert_frame_equal(
        result.points.drop(columns="run_id"), api["sweeps"], check_exact=True, check_dtype=False
    )
    stored = wsssbed.read_results(tmp_path / "api")
    assert stored.runs.run_id.tolist() == [result.run_id] and stored.per_image.empty
    assert len(stored.sweeps) == 61 and len(stored.per_class) == 61 * 21


def test_a_bare_sweep_is_the_sample_and_its_protocol_is_stored(sample_root, tmp_path, monkeypatch):
    monkeypatch.setattr("wsssbed.embedded.sample.ensure_sample", lambda path=None: sample_root)
    result = wsssbed.sweep(thresholds=[0.1, 0.3, 0.2])
    run = result.run
    assert (run.dataset, run.split, run.generator) == ("voc2012", "train", "bg-threshold")
    protocol = Protocol.from_json(run.protocol)
    assert protocol == build_protocol(split="train", thresholds="0.1,0.3,0.2")
    assert protocol.grids == (("threshold", (0.1, 0.3, 0.2)),)
    assert result.points.threshold.tolist() == [0.1, 0.3, 0.2]  # the order given
    out = tmp_path / "results"
    result.save(out)
    with pytest.raises(InputError, match="already stored"):
        result.save(out)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        result.save(tmp_path / "file")


def test_method_resolves_a_manifest_exactly_like_the_cli(sample_root, sample_train_aug, tmp_path):
    for name, folder in (
        ("voc2012-cam", sample_root / "activation/sample-cam/png-per-class"),
        ("voc2012-sal-move", sample_root / "saliency/sample-sal"),
    ):
        fetched = run_cli("fetch", name, "--path", folder, "--data-root", sample_train_aug)
        assert fetched.exit_code == 0, fetched.stderr
    api = wsssbed.sweep(method="voc2012-cam-wsssbed", data_root=sample_root, split="train",
                        out=tmp_path / "api")  # fmt: skip
    cli = run_cli("sweep", "--method", "voc2012-cam-wsssbed", "--data-root", sample_root,
                  "--split", "train", "--out", tmp_path / "cli")  # fmt: skip
    assert cli.exit_code == 0, cli.stderr
    pd.testing.assert_frame_equal(
        _tables(tmp_path / "api")["sweeps"], _tables(tmp_path / "cli")["sweeps"], check_exact=True
    )
    assert api.run.method == "voc2012-cam-wsssbed" and bool(api.run.ignore_label)
    protocol = Protocol.from_json(api.run.protocol)
    assert protocol.generator == "saliency-rule" and len(dict(protocol.grids)["threshold"]) == 15
    # an explicit grid wins over the pipeline's
    narrowed = wsssbed.sweep(method="voc2012-cam-wsssbed", data_root=sample_root,
                             split="train", thresholds="0.1,0.2")  # fmt: skip
    assert sorted(set(narrowed.points.threshold)) == [0.1, 0.2]
    assert narrowed.points.sal_threshold.nunique() == 7  # still the pipeline's


def test_evaluate_scores_label_maps_under_a_name(sample_root, tmp_path):
    truth = sample_root / "VOC2012/SegmentationClass"
    result = wsssbed.evaluate(truth, "voc2012", sample_root, "val", name="oracle",
                              allow_extra_maps=True)  # fmt: skip
    assert result.run.method == "oracle" and result.run.generator == "hard-labels"
    assert result.best.miou == 1.0 and result.best.bf_f == 1.0


def test_protocol_precedence_and_errors():
    from wsssbed.catalogue.manifest import PipelineSpec

    pinned = PipelineSpec(activation="a", generator="power-bg", alphas="1,2")
    assert build_protocol(pipeline=pinned).grids == (("alpha", (1.0, 2.0)),)
    assert build_protocol(pipeline=pinned, alphas=[3]).grids == (("alpha", (3.0,)),)
    assert build_protocol(pipeline=pinned, generator="bg-threshold").generator == "bg-threshold"
    assert build_protocol().grids[0][1][-1] == 0.6 and len(build_protocol().grids[0][1]) == 61
    assert build_protocol(generator="saliency-rule").boundary_tolerance == "0.0075"
    two_d = build_protocol(generator="saliency-rule", sal_thresholds="0.1,0.2")
    assert two_d.boundary_tolerance is None  # boundary F is for 1-D grids
    with pytest.raises(InputError, match="`alphas` is not a grid of bg-threshold"):
        build_protocol(alphas="1:4:1")
    with pytest.raises(InputError, match="did you mean 'saliency-rule'"):
        build_protocol(generator="saliency_rule")
    with pytest.raises(InputError, match="1-D sweeps"):
        build_protocol(
            generator="saliency-rule", sal_thresholds="0.1,0.2", boundary_tolerance="2px"
        )
    with pytest.raises(InputError, match="boundary tolerance"):
        build_protocol(boundary_tolerance="wide")
    with pytest.raises(InputError, match="a value twice"):
        build_protocol(thresholds=[0.1, 0.1])


def test_library_errors_name_parameters_and_the_cli_names_options(sample_root, tmp_path):
    with pytest.raises(InputError, match="did you mean 'npz'"):
        wsssbed.sweep(data_root=sample_root, activation=tmp_path, activation_format="npy")
    with pytest.raises(InputError, match="`data_root`"):
        wsssbed.sweep(dataset="ade20k")
    with pytest.raises(InputError, match=r"activation maps \(<id>\.npz\)"):
        wsssbed.sweep(data_root=sample_root, activation=tmp_path, activation_format="npz")
    cli = run_cli("sweep", "--dataset", "ade20k")
    assert cli.exit_code == 2 and "needs --data-root" in cli.stderr


def test_importing_wsssbed_and_help_load_no_torch():
    code = (
        "import sys, wsssbed, wsssbed.cli; from typer.testing import CliRunner;"
        "r = CliRunner().invoke(wsssbed.cli.app, ['sweep', '--help']);"
        "assert r.exit_code == 0 and '0:0.6:0.01' in r.stdout, r.stdout;"
        "from wsssbed.catalogue.lookup import all_manifests; all_manifests();"
        "print(json.dumps(sorted(m for m in ('torch', 'pandas') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", "import json;" + code],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(done.stdout) == []


def test_every_package_ships_and_the_catalogue_resolves():
    """pyproject lists packages by hand (manifests/ is mapped into the wheel): every
    package folder must be listed, and the catalogue found as `wsssbed.manifests`."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from wsssbed.catalogue.lookup import CATALOGUE, resolve

    root = Path(wsssbed.__file__).resolve().parents[1]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(root).parts) for p in root.glob("wsssbed/**/__init__.py")
    }
    assert found | {"wsssbed.manifests"} == listed
    assert CATALOGUE.samefile(root / "manifests")
    assert resolve("voc2012-cam").dataset == "voc2012"


def test_registries_list_their_names_without_importing_and_agree_after():
    """Names are read from the plugins' decorators (no torch for help or manifests);
    after the modules are imported, the registered names are the same."""
    from wsssbed.activation import FORMATS
    from wsssbed.eval.rules import RULES

    for registry in (RULES, FORMATS):
        listed = registry.names()
        registry.get(listed[0])  # imports every plugin module
        assert tuple(sorted(registry._items)) == listed
    assert RULES.names() == ("bg-threshold", "power-bg", "saliency-rule")
    assert FORMATS.names() == (
        "clip-es-npy",
        "irn-npy",
        "npz",
        "png-per-class",
        "puzzlecam-npy",
        "seam-npy",
    )
