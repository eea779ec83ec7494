"""`wsssbed datasets ...` (list, check, prepare, convert-coco, decode-colours) and
`wsssbed sample`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from wsssbed.cli.app import app, as_options, datasets_app, reported_errors
from wsssbed.cli.common import JSON_OPTION, default_splits, err, out, progress_bar
from wsssbed.datasets import builtin_datasets, get_dataset


@datasets_app.callback()
def datasets_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List the built-in datasets with their class counts and split sizes."""
    if ctx.invoked_subcommand is not None:
        return
    specs = builtin_datasets()
    if as_json:
        rows = [
            {
                "name": s.name,
                "title": s.title,
                "num_classes": s.num_classes,
                "has_background": s.has_background,
                "ignore_index": s.ignore_index,
                "splits": s.splits,
                "default_split": s.default_split,
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Built-in datasets", caption="*: the default split (no --split)")
    for column in ("name", "title", "classes", "background", "splits (images)"):
        table.add_column(column)
    for s in specs:
        splits = "\n".join(  # one split a line: a split's name and size never part
            f"{k}{'*' if k == s.default_split else ''} {v:,}" for k, v in s.splits.items()
        )
        table.add_row(
            s.name, s.title, str(s.num_classes), "yes" if s.has_background else "no", splits
        )
    out.print(table)


@datasets_app.command("check")
def datasets_check(
    dataset: str = typer.Option(..., help="Dataset name or spec .toml."),
    data_root: Path = typer.Option(..., help="Folder holding the dataset."),
    split: str = typer.Option(
        None,
        help="Split (any id list in the split folder) \\[default: the dataset's default split: "
        f"{default_splits()}].",
    ),
    threads: int = typer.Option(4, help="Decoding threads."),
) -> None:
    """Decode every mask of a split and report counts, unreadable files, unknown labels."""
    from wsssbed.datasets.check import check_dataset
    from wsssbed.datasets.local import LocalDataset

    with reported_errors():
        spec = get_dataset(dataset)
        local = LocalDataset(spec, data_root, split or spec.default_split)
        with progress_bar(f"checking {spec.name}/{local.split}") as update:
            report = check_dataset(local, threads, update)
    size_note = ""
    if report.expected is not None and report.expected != report.total:
        size_note = f" [yellow](the published split has {report.expected:,})[/]"
    if local.image_folder is None:
        tried = ", ".join(spec.images)
        pictures = f"no {tried} folder, so masks only: pictures not checked"
    else:
        pictures = f"{report.images_checked:,} pictures checked against their masks"
    out.print(
        f"{spec.title} {report.split}: {report.total:,} images listed{size_note}, "
        f"{report.valid_masks:,} valid masks; {pictures}",
        soft_wrap=True,
    )
    if local.split_check.official is False:
        err.print(f"[yellow]note:[/] {escape(as_options(local.split_check.message))}",
                  highlight=False, soft_wrap=True)  # fmt: skip
    if report.ok:
        out.print("[green]ok[/]")
        return
    for path, problem in report.problems[:50]:
        err.print(f"[red]bad:[/] {escape(f'{path}: {problem}')}", highlight=False, soft_wrap=True)
    if len(report.problems) > 50:
        err.print(f"... and {len(report.problems) - 50} more problems")
    raise typer.Exit(1)


@datasets_app.command("prepare")
def datasets_prepare(
    dataset: str = typer.Argument(
        ..., help="voc2012, coco2014, cocostuff, ade20k, context, context59."
    ),
    sources: list[Path] = typer.Option(
        None, "--from", help="An official archive or its extracted folder (repeat for several)."
    ),
    out_dir: Path = typer.Option(
        ..., "--out", help="Data root to write: new, empty, or one prepare wrote before."
    ),
    clean: bool = typer.Option(
        False,
        "--clean",
        help="Remove staging folders that a killed prepare left beside --out (every run "
        "does this first); without --from, only that.",
    ),
) -> None:
    """Build the layout wsssbed reads from a dataset's official files (docs/datasets.md)."""
    from wsssbed.datasets.prepare import RECORD, prepare
    from wsssbed.io.staging import beside, remove_stale

    if clean and not sources:
        with reported_errors():
            removed = remove_stale(*beside(out_dir))
        out.print(f"removed {len(removed)} stale staging folder(s) of {out_dir}", soft_wrap=True)
        return
    with reported_errors(), progress_bar(f"preparing {dataset}") as update:
        counts = prepare(dataset, sources or [], out_dir, update)
    splits = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    out.print(
        f"{dataset} prepared in {out_dir} ({splits}); sources recorded in {RECORD}", soft_wrap=True
    )


@datasets_app.command("convert-coco")
def datasets_convert_coco(
    annotations: Path = typer.Option(..., help="COCO 2014 instances_<split>2014.json."),
    out_dir: Path = typer.Option(
        ..., "--out", help="Folder of the masks: new, empty, or one convert-coco wrote."
    ),
    split: str = typer.Option("train", help="Split name: train or val."),
) -> None:
    """Convert COCO instance annotations into the 81-class WSSS masks."""
    from wsssbed.datasets.coco import convert_coco
    from wsssbed.io.ownership import OutputFolder

    with reported_errors():
        folder = OutputFolder.claim(out_dir, "datasets convert-coco", "mask folder")
        with progress_bar("converting") as update, folder.staging() as staging:
            count = convert_coco(annotations, staging, split, get_dataset("coco2014"), update)
            folder.commit(staging, keep_others=True)  # the other split's masks stay
    out.print(f"wrote {count:,} masks below {out_dir}")


@datasets_app.command("decode-colours")
def datasets_decode_colours(
    folder: Path = typer.Argument(..., help="Folder of colour-coded RGB PNGs (masks or labels)."),
    dataset: str = typer.Option("voc2012", help="Dataset name or spec .toml of the palette."),
    out_dir: Path = typer.Option(..., "--out", help="New folder for the class-id PNGs."),
) -> None:
    """Decode colour-coded masks into class ids, exactly through the dataset's palette
    (void colour -> 255); any other colour is refused, by name, and nothing is written."""
    from wsssbed.datasets.colours import decode_colour_folder

    with reported_errors(), progress_bar("decoding colours") as update:
        count = decode_colour_folder(folder, out_dir, get_dataset(dataset), update)
    out.print(f"decoded {count:,} files into {out_dir} (palette PNGs of class ids)")


@app.command()
def sample(
    path: Path = typer.Option(None, help="Where to render it (default: the cache)."),
) -> None:
    """Render the embedded sample dataset (once) and print where it is."""
    from wsssbed.embedded.sample import ensure_sample

    with reported_errors():
        root = ensure_sample(path)
    out.print(str(root))
