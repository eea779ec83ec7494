"""`wsssbed manifests`, `fetch`, `verify` and `submit`: the pinned catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from wsssbed.cli.app import app, kept_on_interrupt, reported_errors
from wsssbed.cli.common import (
    DEVICE_OPTION,
    FORMAT_HELP,
    JSON_OPTION,
    JSON_SUMMARY_OPTION,
    RESULTS_OPTION,
    WORKERS_OPTION,
    fitted_table,
    out,
    progress_bar,
    progress_bars,
)
from wsssbed.cli.sweep import finish, held_warnings
from wsssbed.errors import WsssbedError


@app.command()
def manifests(
    kind: str = typer.Option(None, help="activation, saliency or pipeline."),
    dataset: str = typer.Option(None, help="Only this dataset."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the manifests: the catalogue and your own (submitted or registered)."""
    from wsssbed.catalogue.lookup import all_manifests

    with reported_errors():
        found = [
            m
            for m in all_manifests().values()
            if (kind is None or m.kind == kind) and (dataset is None or m.dataset == dataset)
        ]
    if as_json:
        rows = [
            {
                "name": m.name,
                "version": m.version,
                "kind": m.kind,
                "dataset": m.dataset,
                "split": m.split,
                "digest": m.content.digest or None,
                "pinned_from": m.content.pinned_from or None,
                "local_copy": m.source.path or None,
                "file": str(m.path),
            }
            for m in found
        ]
        print(json.dumps(rows, indent=2))
        return
    rows = [
        [m.name, m.version, m.kind, f"{m.dataset}/{m.split}",
         "-" if m.kind == "pipeline" else _pinned(m),
         m.source.path or "-"]
        for m in found
    ]  # fmt: skip
    headers = ["name", "version", "kind", "dataset/split", "pinned", "local copy"]
    optional = ("local copy", "dataset/split", "version")
    out.print(fitted_table(f"{len(found)} manifests", headers, rows, optional=optional))


def _pinned(manifest) -> str:
    """The `pinned` cell: where the digest came from, or `not yet`."""
    if not manifest.content.digest:
        return "not yet"
    return {"upstream-archive": "upstream", "local-copy": "local copy"}.get(
        manifest.content.pinned_from, manifest.content.pinned_from or "yes"
    )


@app.command()
def fetch(
    name: str = typer.Argument(..., help="Manifest name (a pipeline fetches its sources)."),
    path: Path = typer.Option(
        None,
        help="Register a copy you have instead of downloading: a folder of maps, or the "
        "archive (.zip, .tar.gz) the release serves. A first copy is pinned only when it "
        "covers the manifest's split exactly (give --data-root).",
    ),
    data_root: Path = typer.Option(
        None,
        help="Dataset folder (split lists and masks): a first local copy is checked "
        "against it before it is pinned; a download is checked too when given.",
    ),
) -> None:
    """Download a manifest's maps and verify them, or register a local copy with --path."""
    from wsssbed.catalogue.fetch import fetch as fetch_maps
    from wsssbed.io.home import home

    if path is None:
        kept_on_interrupt(
            f"nothing was registered; a partial download stays in {home() / 'downloads'} "
            f"and `wsssbed fetch {name}` resumes it"
        )
    labels = (f"downloading {name}", f"verifying {name}", "reading the split's masks")
    with (
        reported_errors(),
        progress_bars(*labels, in_bytes=(True, False, False)) as (received, update, masks),
    ):
        registered = fetch_maps(name, path, update, received, data_root, masks)
    for m in registered:
        out.print(
            f"{m.ref}: {m.content.files:,} files, {m.content.digest} (pinned from "
            f"{PINNED_FROM_TEXT.get(m.content.pinned_from, 'an unrecorded copy')}), "
            f"registered at {m.path}",
            soft_wrap=True,
        )


PINNED_FROM_TEXT = {
    "upstream-archive": "the upstream archive",
    "local-copy": "a first local copy",
    "submission": "the submission",
}


@app.command()
def forget(name: str = typer.Argument(..., help="A manifest name in your registry.")) -> None:
    """Undo a registration: remove your manifest and the maps wsssbed extracted for it
    (never a folder you registered with --path, never the catalogue's manifests)."""
    from wsssbed.catalogue.forget import forget as forget_name

    kept_on_interrupt(f"what was removed stays removed; `wsssbed forget {name}` finishes")
    with reported_errors():
        done = forget_name(name)
    out.print(f"forgot {done.ref or name}: removed {done.manifest}", soft_wrap=True)
    for path in done.removed:
        out.print(f"removed {path}", soft_wrap=True)
    if done.kept is not None:
        out.print(f"kept your folder {done.kept} (wsssbed did not write it)", soft_wrap=True)
    for path in done.left:
        out.print(f"kept {path} (what is left there wsssbed did not write)", soft_wrap=True)
    if done.catalogued:
        out.print(f"`{name}` is the catalogue's entry again (not pinned on this machine)")


@app.command()
def verify(
    name: str = typer.Argument(None, help="Manifest name."),
    all_: bool = typer.Option(False, "--all", help="Every manifest with a local copy."),
) -> None:
    """Recompute the digests of local copies and report drift (exit 1 on any)."""
    from wsssbed.catalogue.lookup import all_manifests, local_folder, resolve
    from wsssbed.catalogue.methods import check_digest

    with reported_errors():
        if (name is None) == (not all_):
            raise WsssbedError("give a manifest NAME or --all")
        targets = [resolve(name)] if name else list(all_manifests().values())
        table = Table(title="digest check")
        for column in ("manifest", "files", "status"):
            table.add_column(column)
        failed = 0
        for m in targets:
            if m.kind == "pipeline":
                continue
            folder = local_folder(m)
            if folder is None:
                if name is not None:
                    raise WsssbedError(f"{m.ref} has no local copy; `wsssbed fetch {m.name}`")
                continue
            try:
                with progress_bar(f"digesting {m.name}") as update:
                    check_digest(m, folder, update)
                status = "[green]ok[/]"
            except WsssbedError as error:
                failed += 1
                status = f"[red]{error}[/]"
            table.add_row(m.ref, f"{m.content.files:,}", status)
    out.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def submit(
    maps: Path = typer.Argument(..., help="Folder of activation maps, or a .zip / .tar.gz."),
    dataset: str = typer.Option(..., help="Dataset name."),
    data_root: Path = typer.Option(..., help="Dataset folder (ground truth)."),
    split: str = typer.Option(..., help="The split the maps cover, exactly."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    name: str = typer.Option(..., help="Manifest name for the method (lower-case, no spaces)."),
    version: str = typer.Option("1.0.0", help="Semver; above the existing one to update."),
    paper: str = typer.Option("", help="Paper link."),
    code: str = typer.Option("", help="Code link."),
    license_: str = typer.Option("", "--license", help="License of the maps."),
    note: str = typer.Option("submitted", help="Changelog note for this version."),
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    results: Path = RESULTS_OPTION,
    as_json: bool = JSON_SUMMARY_OPTION,
) -> None:
    """Validate precomputed maps, pin them in a new manifest and run the default sweep."""
    from wsssbed.catalogue.submit import Submission
    from wsssbed.catalogue.submit import submit as submit_maps
    from wsssbed.datasets import get_dataset
    from wsssbed.datasets.local import LocalDataset
    from wsssbed.eval.job import SweepJob
    from wsssbed.protocol import build_protocol

    with reported_errors():
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split)
        protocol = build_protocol(dataset=dataset, split=local.split)
        job = SweepJob.from_protocol(
            protocol,
            local,
            device=device,
            workers=workers,
        )
        entry = Submission(name, fmt, version, paper, code, license_, note=note)
        with progress_bar(f"validating and sweeping {name}", not as_json) as update, \
                held_warnings() as held:  # fmt: skip
            manifest, summary = submit_maps(maps, job, entry, results, update)
    if not as_json:
        out.print(
            f"[green]pinned[/] {manifest.ref}: {manifest.content.files:,} "
            f"{manifest.content.format} files, {manifest.content.digest} -> {manifest.path}",
            soft_wrap=True,
        )
    finish(summary, results, as_json, f"best point of {name} on {spec.name}/{split}", held)
