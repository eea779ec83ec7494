"""`wsssbed leaderboard`: a static, self-contained site rendered from the Parquet tables.

- `index.html`: one table per (dataset, stage), never mixing stages, sortable and
  filterable; numbers reported in papers are shown in their own table beside them.
- `runs/<run_id>.html`: curves (or a heatmap), per-class IoU at the chosen point, a
  gallery where the images and maps are on this machine, and full provenance.

Each run is shown at a point chosen, in this order: its pipeline manifest's recommended
point; the best point of the same setting on another split (a train split first), so
that a val number does not see val's ground truth; else its best point on its own split,
marked "oracle" (chosen with that split's ground truth). The page says which.

Local paths (data root, maps, split file, command line) are shown by their last
component unless the user names a root or asks for them whole (`paths.PathDisplay`); the
Parquet tables keep them.

The same tables give the same bytes: rows are sorted, nothing depends on the clock, and
figures are deterministic SVG. The site is rendered into a staging folder inside `--out`
and committed file by file (`wsssbed.io.ownership`), so a failed render leaves the old
site, and only files an earlier render recorded as its own are replaced or removed.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from wsssbed.datasets import BUILTIN, dataset_title, get_dataset, spec_of_run
from wsssbed.datasets.fingerprint import is_official, mixed_ground_truth, short, with_subsets
from wsssbed.errors import InputError, WsssbedError
from wsssbed.eval.summary import BOUNDARY_METRICS, GLOSSARY, SUMMARY_METRICS
from wsssbed.io.configio import from_table, read_toml
from wsssbed.io.imageio import write_text
from wsssbed.io.outputs import inside
from wsssbed.io.ownership import OutputFolder
from wsssbed.report import figures
from wsssbed.report.gallery import gallery
from wsssbed.report.paths import PathDisplay
from wsssbed.report.sensitivity import (
    PerImage,
    activation_axis,
    bootstrap_interval,
    check_draws,
    is_2d,
    recommended_point,
    row_at,
    run_label,
    setting_key,
)
from wsssbed.results.store import best_row, read_table

TEMPLATES = Path(__file__).resolve().parent / "templates"
PROVENANCE_WIDTH = 48  # longer values show their start; the full value is one click away
COLUMNS = [
    ("method", "The maps' method: the manifest name, or the maps folder's name."),
    ("saliency", "The saliency source the generator used, when it uses one."),
    ("generator", "The pseudo-label rule swept (`+ ignore`: salient background is void)."),
    ("split", "The images scored: a split's name, or an id-list file's name with the first "
     "digits of the ids' digest (split_digest), which tells subsets apart. A split whose "
     "ids are not the dataset's official list (another list saved under an official name) "
     "is marked not the official list: its numbers are not comparable."),
    ("ground truth", "A fingerprint of the decoded masks scored (first 12 hex digits of "
     "gt_digest); rows of one subset with different fingerprints are marked other GT."),
    ("point", "The grid point shown."),
    ("chosen by", "How the point was chosen: recommended by the method's pipeline manifest, "
     "transferred from the best of the same setting on another split, or oracle (the best "
     "on this very split, an upper bound)."),
    ("mIoU, BF", "The metrics at the shown point (see above)."),
    ("95% CI", "A bootstrap interval of mIoU over images, for runs stored with "
     "--per-image."),
    ("images", "The number of images scored."),
    ("manifest", "The pinned manifests the run used; a check mark: verified against its "
     "digest."),
    ("run", "When the run started (UTC) and the end of its run id, which tells repeated "
     "runs apart."),
]  # fmt: skip
STAGE_TITLES = {
    "activation": "Activation maps (pseudo-labels swept from them)",
    "pseudo-label": "Pseudo-labels",
    "final": "Final segmentation",
}


@dataclass
class ReportedRow:
    """One `[[reported]]` table: a number a paper reports (not measured here)."""

    dataset: str
    split: str
    stage: str
    method: str
    miou: float
    source: str
    bf_f: float | None = None
    note: str | None = None
    saliency: str | None = None
    threshold: float | None = None


REPORTED_COLUMNS = sorted(f.name for f in dataclasses.fields(ReportedRow))


@dataclass
class Entry:
    """One run as the site shows it (scores are fractions; templates format them)."""

    run: pd.Series
    label: str
    saliency: str
    point: int
    point_text: str
    chosen_by: str
    scores: pd.Series
    ci: tuple[float, float] | None
    manifests: list[dict]
    gt_mixed: bool = False  # its split was scored on other ground truth in the same table

    @property
    def unofficial(self) -> bool:
        """The run's ids are not the official list of its split name."""
        return not is_official(self.run)

    @property
    def date(self) -> str:
        """When the run started, to the minute (UTC)."""
        return str(self.run.started_at)[:16].replace("T", " ")

    @property
    def gt_short(self) -> str:
        """Short ground-truth fingerprint (`wsssbed.datasets.fingerprint`), "-" for old runs."""
        return short(self.run.gt_digest)

    @property
    def dataset_title(self) -> str:
        """The run's dataset as people name it (`PASCAL VOC 2012`)."""
        return dataset_title(self.run)

    @property
    def page(self) -> str:
        """Path of the run's page, relative to the site root."""
        return f"runs/{self.run.run_id}.html"


def _point_text(row: pd.Series) -> str:
    parts = [f"{axis} {row[axis]:g}" for axis in ("sal_threshold", "threshold", "alpha")
             if pd.notna(row[axis])]  # fmt: skip
    return ", ".join(parts) if parts else "-"


def _transfer_source(run: pd.Series, runs: pd.DataFrame) -> pd.Series | None:
    """A run of the same setting on other images to choose the point on (train first);
    subsets are told apart by their ids (`with_subsets`), never by name alone. An official
    split never takes its point from a list that is not a split's official one (such a
    list may hold this split's very images)."""
    other = (runs.subset_key != run.subset_key) & (runs.subset != run.subset)
    if run.subset == run.split:  # an official list
        other &= runs.subset == runs.split
    others = runs[other & (runs.key == setting_key(run))]
    if others.empty:
        return None
    preference = others.subset.str.startswith("train").map({True: 0, False: 1})
    return (
        others.assign(preference=preference).sort_values(["preference", "subset", "run_id"]).iloc[0]
    )


def _entry(
    run: pd.Series, runs: pd.DataFrame, sweeps: pd.DataFrame, per_image: pd.DataFrame, draws: int
) -> Entry:
    spec_of_run(run)  # a run whose dataset this machine cannot name is not shown
    rows = sweeps[sweeps.run_id == run.run_id].sort_values("point").reset_index(drop=True)
    recommended = recommended_point(run)
    at_recommended = row_at(rows, recommended) if recommended else None
    source = _transfer_source(run, runs)
    if at_recommended is not None:
        chosen, how = at_recommended, "recommended (pipeline manifest)"
    elif source is not None:
        point = int(best_row(sweeps[sweeps.run_id == source.run_id]).point)
        chosen = rows.set_index("point", drop=False).loc[point]
        how = f"transferred: best on {source.subset}"
    else:
        chosen = best_row(rows)
        how = "oracle: best on this split" if len(rows) > 1 else "as given (one point)"
    point = int(chosen.point)
    ci = None
    mine = per_image[per_image.run_id == run.run_id]
    if not mine.empty:
        counts = PerImage.from_rows(mine, len(rows), spec_of_run(run).num_classes)
        ci = bootstrap_interval(counts, point, draws, seed=0)
    manifests = [] if pd.isna(run.get("manifests")) else json.loads(run.manifests)
    saliency = next((m["name"] for m in manifests if m["kind"] == "saliency"), None)
    if saliency is None:
        saliency = "-" if pd.isna(run.saliency) else Path(str(run.saliency)).name
    return Entry(run, run_label(run), saliency, point, _point_text(chosen), how, chosen, ci,
                 manifests)  # fmt: skip


def read_reported(path: Path) -> pd.DataFrame:
    """Numbers reported in papers (`[[reported]]` tables in a TOML file), validated."""
    data = read_toml(path, "reported-numbers file")
    tables = data.get("reported", [])
    if not isinstance(tables, list):
        raise InputError("`reported` must be an array of tables ([[reported]])", path)
    rows = []
    for number, table in enumerate(tables, start=1):
        row = from_table(ReportedRow, table, path, f"reported #{number}")
        for name in ("miou", "bf_f"):
            value = getattr(row, name)
            if value is not None and not 0 <= value <= 1:
                raise InputError(
                    f"[[reported]] #{number}: {name} must be a fraction in [0, 1], got {value!r}",
                    path,
                )
        if row.stage not in STAGE_TITLES:
            raise InputError(
                f"[[reported]] #{number}: stage {row.stage!r} is not one of "
                f"{', '.join(STAGE_TITLES)}",
                path,
            )
        if not row.source.startswith(("https://", "http://")):
            raise InputError(
                f"[[reported]] #{number}: source must be an http(s) address, got {row.source!r}",
                path,
            )
        rows.append(dataclasses.asdict(row))
    frame = pd.DataFrame(rows, columns=REPORTED_COLUMNS).astype(object)
    frame = frame.where(frame.notna(), None)  # absent optional fields are None
    return frame.sort_values(["dataset", "stage", "split", "method"], kind="stable")


def _figures(entry: Entry, rows: pd.DataFrame) -> list[str]:
    """The run page's figures, each marking the shown point and how it was chosen."""
    if len(rows) < 2:
        return []
    kind = entry.chosen_by.split(":")[0].split(" ")[0]  # recommended, transferred, oracle
    point = rows.set_index("point").loc[entry.point]
    title = f"{entry.label} on {entry.dataset_title}, {entry.run.subset}"
    if is_2d(rows):
        chosen = {a: float(point[a]) for a in ("threshold", "sal_threshold")}
        return [figures.svg_text(figures.heatmap_figure(rows, title, "miou", chosen, kind))]
    axis = activation_axis(rows)
    curve = figures.Curve(entry.label, rows, float(point[axis]), kind)
    svgs = [figures.svg_text(figures.curves_figure([curve], axis, "miou", title))]
    if rows.bf_f.notna().any():
        svgs.append(figures.svg_text(figures.curves_figure([curve], axis, "bf_f", title)))
    return svgs


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["pct"] = lambda v: "-" if v is None or pd.isna(v) else f"{100 * v:.2f}"
    environment.filters["raw"] = lambda v: "" if v is None or pd.isna(v) else repr(float(v))
    # only http(s) addresses become links: never `javascript:` or `data:` from a table
    environment.tests["web_address"] = lambda v: (
        isinstance(v, str) and v.startswith(("https://", "http://"))
    )
    return environment


def render_site(
    results: Path,
    out: Path,
    reported: Path | None = None,
    gallery_images: int = 4,
    draws: int = 1000,
    paths: PathDisplay | None = None,
) -> list[Path]:
    """Render the site for every committed run in `results` into `out`; returns the files
    written.

    `out` is claimed before any work (`wsssbed.io.ownership`): a new or empty folder, or
    a site rendered here before, whose own files are replaced (and those of runs no
    longer shown removed); a user's file, another command's output or a results folder
    is refused.

    Args:
        paths: how local paths are shown (default: by their last component).
    """
    paths = paths or PathDisplay()
    draws = check_draws(draws)
    site = OutputFolder.claim(out, "leaderboard", "site folder")
    runs = read_table(results, "runs")
    if runs.empty:
        raise InputError("no runs to show", results)
    sweeps = read_table(results, "sweeps")
    per_class = read_table(results, "per_class")
    per_image = read_table(results, "per_image")
    reported_rows = read_reported(reported) if reported else pd.DataFrame(columns=REPORTED_COLUMNS)
    runs = with_subsets(runs)
    runs = runs.assign(key=runs.apply(setting_key, axis=1))
    skipped: list[tuple[str, str]] = []
    entries = []
    for _, run in runs.iterrows():
        with _skipping(run, skipped):
            entries.append(_entry(run, runs, sweeps, per_image, draws))
    shown = runs[runs.run_id.isin([e.run.run_id for e in entries])]
    mixed = {(d, s, stage) for stage, group in shown.groupby("stage")
             for d, s in mixed_ground_truth(group)}  # fmt: skip
    for entry in entries:
        entry.gt_mixed = (entry.run.dataset, entry.run.subset, entry.run.stage) in mixed
    entries.sort(key=lambda e: (e.run.dataset, e.run.stage, e.run.subset, e.label, e.run.run_id))
    environment = _environment()
    pages = {}
    for entry in entries:
        with _skipping(entry.run, skipped):
            pages[entry.page] = _run_page(
                environment, entry, sweeps, per_class, gallery_images, paths
            )
    entries = [e for e in entries if e.page in pages]
    for run_id, reason in skipped:
        warnings.warn(f"run {run_id} is not shown: {reason}", stacklevel=2)
    index = environment.get_template("index.html").render(
        sections=_sections(entries, reported_rows),
        skipped=skipped,
        metrics=SUMMARY_METRICS + BOUNDARY_METRICS,
        root="",
    )
    glossary = environment.get_template("glossary.html").render(
        glossary=list(GLOSSARY.items()), columns=COLUMNS, root=""
    )
    with site.staging() as staging:
        (staging / "runs").mkdir()
        write_text(staging / "index.html", index)
        write_text(staging / "glossary.html", glossary)
        for page, html in pages.items():
            write_text(inside(staging, page), html)
        return site.commit(staging)


@contextmanager
def _skipping(run: pd.Series, skipped: list[tuple[str, str]]) -> Iterator[None]:
    """Record a run that cannot be shown (a dataset this machine does not know, a grid or
    provenance field that does not parse) instead of failing the whole site: results
    folders are shared, and one stranger's row must not hide everyone's."""
    try:
        yield
    except Exception as exc:  # a stored row is data: any failure to show it is the row's
        reason = (
            str(exc)
            if isinstance(exc, WsssbedError)
            else f"its stored row does not read ({type(exc).__name__}: {exc})"
        )
        skipped.append((str(run.run_id), reason))


def _run_page(
    environment, entry: Entry, sweeps, per_class, gallery_images: int, paths: PathDisplay
) -> str:
    """The HTML of one run's page (local paths shown by `paths`)."""
    rows = sweeps[sweeps.run_id == entry.run.run_id].sort_values("point")
    classes = per_class[
        (per_class.run_id == entry.run.run_id)
        & (per_class.point == entry.point)
        & (per_class.union > 0)
    ]
    return environment.get_template("run.html").render(
        entry=entry,
        svgs=_figures(entry, rows),
        classes=classes.sort_values("class_id").to_dict("records"),
        gallery=gallery(entry.run, entry.point, gallery_images, paths.path),
        provenance=_provenance(entry.run, paths),
        paths_note=paths.note,
        metrics=SUMMARY_METRICS + BOUNDARY_METRICS,
        root="../",
    )


def _sections(entries: list[Entry], reported_rows: pd.DataFrame) -> list[dict]:
    """Per dataset, per stage: the measured entries and the reported numbers."""
    sections = []
    for dataset in sorted({e.run.dataset for e in entries} | set(reported_rows.dataset)):
        runs_on = [e.run for e in entries if e.run.dataset == dataset]
        title = spec_of_run(runs_on[0]).title if runs_on else _builtin_title(dataset)
        stages = []
        for stage in STAGE_TITLES:
            measured = [e for e in entries if e.run.dataset == dataset and e.run.stage == stage]
            paper = reported_rows[
                (reported_rows.dataset == dataset) & (reported_rows.stage == stage)
            ]
            if measured or not paper.empty:
                stages.append({"key": stage, "title": STAGE_TITLES[stage], "entries": measured,
                               "reported": paper.to_dict("records"),
                               "gt_mixed": any(e.gt_mixed for e in measured),
                               "unofficial": any(e.unofficial for e in measured)})  # fmt: skip
        sections.append({"dataset": dataset, "title": title, "stages": stages})
    return sections


def _builtin_title(dataset: str) -> str:
    """A dataset only reported numbers mention: its built-in title, else its name."""
    return get_dataset(dataset).title if dataset in BUILTIN else dataset


def _provenance(run: pd.Series, paths: PathDisplay) -> list[tuple[str, str, str]]:
    """(name, value rounded or cut for reading, full value) of each provenance field,
    local paths shown by `paths`."""
    names = ("run_id", "stage", "dataset", "split", "data_root", "n_images", "generator",
             "ignore_label", "grid", "activation", "activation_format", "saliency",
             "predictions", "labels", "boundary_tolerance", "gt_digest", "gt_source",
             "gt_void_ratio", "split_digest", "split_official", "split_file",
             "split_file_sha256", "dataset_spec_sha256",
             "method", "verified", "device", "workers", "wall_time_s", "started_at",
             "wsssbed_version", "git_commit", "packages", "command")  # fmt: skip
    rows = []
    for name in names:
        value = run.get(name)
        full = "-" if value is None or pd.isna(value) else paths.field(name, str(value))
        short = full
        if name == "wall_time_s" and full != "-":
            short = f"{float(value):.2f} s"
        elif name == "gt_void_ratio" and full != "-":
            short = f"{100 * float(value):.2f}% of mask pixels"
        elif len(full) > PROVENANCE_WIDTH:
            short = full[: PROVENANCE_WIDTH - 1] + "\u2026"
        rows.append((name, short, full))
    return rows
