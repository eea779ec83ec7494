"""The static leaderboard: rendered from Parquet, deterministic, and checked in a real
headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, sweep_sample

from wsssbed.datasets.sanity import SYNTHETIC
from wsssbed.errors import InputError
from wsssbed.report.leaderboard import read_reported, render_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
REPORTED = """
[[reported]]
dataset = "voc2012"
split = "train"
stage = "pseudo-label"
method = "Some paper"
miou = 0.715
source = "https://example.org/paper"
note = "Table 2"
"""


@pytest.fixture(scope="module")
def store(sample_root, tmp_path_factory):
    """Sample runs at two stages: swept activation maps (1-D and 2-D) and label maps."""
    out = sweep_sample(sample_root, tmp_path_factory.mktemp("results"), (
        ("--split", "train", "--per-image"),
        ("--split", "val"),
        ("--split", "train", "--generator", "saliency-rule", "--saliency",
         sample_root / "saliency/sample-sal", "--sal-thresholds", "0.1:0.5:0.1",
         "--thresholds", "0:0.6:0.05", "--ignore-label"),
    ))  # fmt: skip
    labels = sample_root / "VOC2012/SegmentationClass"  # ground truth as a "segmenter"
    result = run_cli("evaluate", "--pred", labels, "--data-root", sample_root, "--split", "val",
                  "--stage", "final", "--allow-extra-maps", "--out", out, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def site(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    reported = root / "reported.toml"
    reported.write_text(REPORTED)
    out = root / "site"
    render_site(store, out, reported, gallery_images=2, draws=200)
    return out


def test_same_results_give_the_same_bytes(store, site, tmp_path):
    reported = site.parent / "reported.toml"
    again = tmp_path / "again"
    render_site(store, again, reported, gallery_images=2, draws=200)
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 7  # index, glossary, 4 run pages and the .wsssbed-output marker
    for name in files:
        assert (site / name).read_bytes() == (again / name).read_bytes(), name


def test_runs_on_other_ground_truth_are_marked(store, sample_root, tmp_path):
    """A lab whose val masks differ in one pixel: same split name, other fingerprint."""
    from PIL import Image

    results = tmp_path / "results"
    shutil.copytree(store, results)
    other = tmp_path / "other"
    shutil.copytree(sample_root / "VOC2012", other / "VOC2012")
    shutil.copy(sample_root / SYNTHETIC, other / SYNTHETIC)  # the lab's copy of the sample
    ids = (other / "VOC2012/ImageSets/Segmentation/val.txt").read_text().split()
    mask = other / "VOC2012/SegmentationClass" / f"{ids[0]}.png"
    pixels = np.array(Image.open(mask))
    pixels[5, 5] = 0 if pixels[5, 5] else 1
    Image.fromarray(pixels).save(mask)
    result = run_cli("sweep", "--data-root", other, "--split", "val", "--activation",
                     sample_root / "activation/sample-cam/npz", "--activation-format", "npz",
                     "--allow-extra-maps", "--out", results)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    shown = run_cli("results", "show", "--results", results)
    assert "scored on 2 different ground truths" in " ".join(shown.stderr.split())
    render_site(results, tmp_path / "site", gallery_images=0, draws=10)
    html = (tmp_path / "site/index.html").read_text()
    runs = pd.read_parquet(results / "runs.parquet")
    val = runs[(runs.split == "val") & (runs.stage == "activation")]
    assert val.gt_digest.nunique() == 2
    for run_id in val.run_id:
        row = re.search(rf'<tr data-run="{run_id}">.*?</tr>', html, re.S).group(0)
        assert "other GT" in row
    train = runs[(runs.split == "train") & (runs.stage == "activation")]
    for run_id in train.run_id:
        row = re.search(rf'<tr data-run="{run_id}">.*?</tr>', html, re.S).group(0)
        assert "other GT" not in row
    assert "scored on different ground truth" in html


def test_a_failed_render_keeps_the_old_site(store, site, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.toml"
    bad.write_text(REPORTED.replace("0.715", "71.5"))
    result = run_cli("leaderboard", "--results", store, "--out", copy, "--reported", bad)
    assert result.exit_code == 2 and "fraction in [0, 1]" in result.stderr
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace('method = "Some paper"\n', ""), "required field `method` is missing"),
        (lambda t: t.replace('note = "Table 2"', "mIoU = 3"), "has unknown fields ['mIoU']"),
        (lambda t: t.replace('"pseudo-label"', '"pseudo"'), "stage 'pseudo'"),
        (lambda t: t + "[[[", "not a valid TOML reported-numbers file"),
    ],
)
def test_reported_numbers_are_validated(tmp_path, edit, message):
    path = tmp_path / "reported.toml"
    path.write_text(edit(REPORTED))
    with pytest.raises(InputError, match=re.escape(message)) as info:
        read_reported(path)
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # a dev dependency

    assert CHROMIUM.exists(), "install Debian's chromium (.ci/run does: apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A page that records page errors, console errors and every request it makes."""
    context = browser.new_context()
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    context.route("**/*", lambda route: (page.requests.append(route.request.url),
                                         route.continue_() if route.request.url.startswith("file:")
                                         else route.abort()))  # fmt: skip
    yield page
    context.close()


def _expected_points(store):
    """run id -> (point, how): the best point of the same setting on the other split when
    there is one (train and val bg-threshold runs here), else the run's own best."""
    runs = pd.read_parquet(store / "runs.parquet")
    sweeps = pd.read_parquet(store / "sweeps.parquet")
    best = sweeps.loc[sweeps.groupby("run_id").miou.idxmax()].set_index("run_id").point
    expected = {}
    for _, run in runs.iterrows():
        twins = runs[(runs.generator == run.generator) & (runs.grid == run.grid)
                     & (runs.stage == run.stage) & (runs.split != run.split)]  # fmt: skip
        if len(twins):
            expected[run.run_id] = (best[twins.run_id.iloc[0]], f"transferred: best on "
                                    f"{twins.split.iloc[0]}")  # fmt: skip
        else:
            expected[run.run_id] = (best[run.run_id], "oracle" if run.stage == "activation"
                                    else "as given")  # fmt: skip
    return expected


def test_index_in_a_real_browser(site, store, page):
    page.goto((site / "index.html").as_uri())
    page.wait_for_load_state("load")
    assert page.errors == []
    assert page.requests and all(url.startswith("file://") for url in page.requests)

    sweeps = pd.read_parquet(store / "sweeps.parquet").set_index(["run_id", "point"])
    runs = pd.read_parquet(store / "runs.parquet")
    expected = _expected_points(store)
    assert sorted(how for _, how in expected.values()).count("transferred: best on train") == 1
    cells = page.locator("table.measured td[data-metric='miou']")
    assert cells.count() == len(runs)
    for i in range(cells.count()):
        cell = cells.nth(i)
        row = cell.locator("xpath=..")
        run_id = row.get_attribute("data-run")
        point, how = expected[run_id]
        assert row.locator("td").nth(6).inner_text().startswith(how)
        fingerprint = runs.set_index("run_id").gt_digest[run_id]
        assert row.locator("td").nth(4).inner_text() == fingerprint[7:19]  # one ground truth
        shown = float(cell.get_attribute("data-value"))
        assert shown == sweeps.loc[(run_id, point), "miou"]  # the stored value, exactly
        assert cell.inner_text() == f"{100 * shown:.2f}"

    # stages are never mixed: the label-map run sits alone in a `final` table
    final = runs[runs.stage == "final"].run_id.iloc[0]
    table = page.locator(f"tr[data-run='{final}']").locator("xpath=ancestor::table")
    assert table.get_attribute("data-stage") == "final"
    assert table.locator("tbody tr").count() == 1
    reported = page.locator("table.reported td[data-value]").first
    assert reported.inner_text() == "71.50"

    def column(table, index):
        return [float(v) for v in table.locator(f"tbody tr td:nth-child({index})")
                .evaluate_all("cells => cells.map(c => c.dataset.value)")]  # fmt: skip

    measured = page.locator("table.measured[data-stage='activation']")
    header = measured.locator("th", has_text="mIoU")
    header.click()
    assert column(measured, 8) == sorted(column(measured, 8))
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert column(measured, 8) == sorted(column(measured, 8), reverse=True)

    page.fill("#filter", "saliency-rule")
    visible = measured.locator("tbody tr:visible")
    assert visible.count() == 1 and "saliency-rule" in visible.inner_text()
    assert page.errors == []


def _check_gallery(page, run, point: int, sample_root) -> None:
    """Captions, ranks, per-image mIoU (recomputed with numpy) and the colour legend."""
    from PIL import Image
    from reference import confusion, irn_labels, metrics

    from wsssbed.activation import read_activation
    from wsssbed.datasets import get_dataset

    rows = page.locator(".gallery-row")
    assert rows.count() == 2  # gallery_images=2: the best and the median image
    images = page.locator(".gallery-row img")
    assert images.count() == 6
    assert all(w > 0 for w in images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
    captions = [rows.nth(i).locator(".caption").inner_text() for i in range(2)]
    assert captions[0].startswith("best") and captions[1].startswith("median")
    values = [float(rows.nth(i).locator(".miou").get_attribute("data-value")) for i in range(2)]
    assert values[0] >= values[1]
    legend = page.locator("ul.legend li").all_inner_texts()
    assert "background" in legend and legend[-1] == "void / unlabelled"
    spec = get_dataset("voc2012")
    for i in range(2):
        image_id = rows.nth(i).get_attribute("data-image")
        assert image_id in captions[i]
        gt = np.array(Image.open(sample_root / "VOC2012/SegmentationClass" / f"{image_id}.png"))
        if run.stage == "final":  # the ground truth scored as a segmenter: perfect
            assert values[i] == 1.0
            continue
        threshold = json.loads(run.grid)["threshold"][point]
        maps = read_activation(Path(run.activation), image_id, "npz", spec)
        pred = irn_labels(maps.class_ids, maps.cams, np.float32(threshold), True, gt.shape)
        assert values[i] == pytest.approx(metrics(confusion(gt, pred, 21))["miou"], abs=1e-12)


def test_run_pages_in_a_real_browser(site, store, page, sample_root):
    runs = pd.read_parquet(store / "runs.parquet")
    expected = _expected_points(store)
    per_class = pd.read_parquet(store / "per_class.parquet")
    for _, run in runs.iterrows():
        page.goto((site / "runs" / f"{run.run_id}.html").as_uri())
        assert page.errors == [] and all(u.startswith("file://") for u in page.requests)
        figures = page.locator(".figure svg")
        if run.generator != "hard-labels":
            assert figures.count() >= 1
            box = figures.first.bounding_box()
            assert box["width"] > 100 and box["height"] > 100  # the plot is drawn
        shown = float(page.locator("td[data-metric='miou']").get_attribute("data-value"))
        point, _ = expected[run.run_id]
        mine = per_class[(per_class.run_id == run.run_id) & (per_class.point == point)
                         & (per_class.union > 0)].set_index("class_name")  # fmt: skip
        assert shown == pytest.approx(mine.iou.mean())  # nanmean over classes with a union
        rows = page.locator("table.per-class tbody tr")
        assert rows.count() == len(mine)
        for i in range(rows.count()):
            name = rows.nth(i).locator("td").first.inner_text()
            value = float(rows.nth(i).locator("td").nth(1).get_attribute("data-value"))
            assert value == mine.iou[name]
        wall = page.locator("xpath=//table[@class='provenance']//tr[th='wall_time_s']/td")
        assert wall.inner_text() == f"{run.wall_time_s:.2f} s"  # rounded for reading
        packages = page.locator("xpath=//table[@class='provenance']//tr[th='packages']//details")
        assert packages.count() == 1  # a long value: its start, the whole one click away
        if run.generator != "hard-labels":  # the shown point is marked with how it was chosen
            how = expected[run.run_id][1].split(":")[0].split(" ")[0]
            assert f"{how} " in figures.first.inner_html()
        if run.generator == "saliency-rule":
            continue  # its labels need the WSSS-BED reference; the other runs cover the gallery
        _check_gallery(page, run, point, sample_root)


@pytest.mark.parametrize("width", [1400, 390])
def test_pages_fit_the_screen_and_pass_axe(site, store, browser, width):
    """No serious or critical axe-core violation, and no page wider than the screen."""
    from axe_playwright_python.sync_playwright import Axe

    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    run_id = pd.read_parquet(store / "runs.parquet").run_id.iloc[0]
    for path in (site / "index.html", site / "glossary.html", site / "runs" / f"{run_id}.html"):
        page.goto(path.as_uri())
        results = Axe().run(page)
        serious = [v["id"] for v in results.response["violations"]
                   if v["impact"] in ("serious", "critical")]  # fmt: skip
        assert serious == [], (path.name, serious)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, (path.name, overflow)
    context.close()


def test_every_page_links_the_glossary(site):
    glossary = (site / "glossary.html").read_text()
    from wsssbed.eval.summary import GLOSSARY

    for name in GLOSSARY:
        assert f'id="{name}"' in glossary
    for page in [site / "index.html", *(site / "runs").glob("*.html")]:
        assert "glossary.html" in page.read_text()


def test_legends_tell_two_runs_of_one_method_apart():
    from wsssbed.report.sensitivity import distinct_labels

    runs = ["20261125T010203Z-aaaaaaaa", "20261126T010203Z-bbbbbbbb", "20261126T0102Z-cccccccc"]
    labels = distinct_labels(["cam", "cam", "eps"], runs)
    assert labels == ["cam (2026-11-25 aaaaaaaa)", "cam (2026-11-26 bbbbbbbb)", "eps"]


LOCAL_PATH = re.compile(r"(?<![\w.:/])(?:/|~/)[\w.-]+/[\w./-]*")  # a path on this machine


def _local_paths(site: Path) -> set[str]:
    """Every absolute path in the site's pages (picture data and web addresses excluded)."""
    found = set()
    for page in site.rglob("*.html"):
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "", page.read_text())
        found |= set(LOCAL_PATH.findall(text))
    return found


def test_the_site_shows_no_local_paths_unless_asked(store, site, sample_root, tmp_path):
    from wsssbed.report.paths import PathDisplay

    runs = pd.read_parquet(store / "runs.parquet")
    recorded = str(sample_root / "activation/sample-cam/npz")
    assert recorded in runs.activation.tolist()  # the results keep them: the user's record
    assert _local_paths(site) == set()
    pages = " ".join(p.read_text() for p in (site / "runs").glob("*.html"))
    assert "<code>\u2026/npz</code>" in pages and f"<code>\u2026/{sample_root.name}</code>" in pages
    assert "shown by their last component" in pages

    whole = tmp_path / "whole"
    render_site(store, whole, gallery_images=0, draws=10, paths=PathDisplay(show=True))
    assert recorded in _local_paths(whole)
    relative = tmp_path / "relative"
    render_site(store, relative, gallery_images=0, draws=10,
                paths=PathDisplay(root=sample_root.parent))  # fmt: skip
    text = " ".join(p.read_text() for p in (relative / "runs").glob("*.html"))
    assert f"<code>{sample_root.name}/activation/sample-cam/npz</code>" in text
    assert _local_paths(relative) == set()

    both = run_cli("leaderboard", "--results", store, "--out", tmp_path / "x", "--show-paths",
                   "--paths-relative-to", tmp_path)  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.stderr


def test_command_lines_keep_their_words_and_lose_their_folders():
    from wsssbed.report.paths import PathDisplay

    command = json.dumps(["/home/ana/venv/bin/wsssbed", "sweep", "--data-root", "/home/ana/VOC",
                          "--thresholds", "0:0.6:0.01", "--out=/home/ana/res",
                          "~/cams/irn"])  # fmt: skip
    shown = json.loads(PathDisplay().command(command))
    assert shown == ["\u2026/wsssbed", "sweep", "--data-root", "\u2026/VOC", "--thresholds",
                     "0:0.6:0.01", "--out=\u2026/res", "\u2026/irn"]  # fmt: skip
    assert PathDisplay(root=Path("/home/ana")).path("/home/ana/VOC") == "VOC"
    assert PathDisplay(root=Path("/home/ana")).path("/srv/VOC") == "\u2026/VOC"
    assert PathDisplay().field("labels", "masks") == "masks"
    assert PathDisplay(show=True).command(command) == command
    assert "\u2026/wsssbed" in PathDisplay().command(command)  # readable, not `\u2026`


def test_a_missing_gallery_says_why_in_a_real_browser(sample_root, tmp_path, page):
    """A data root without pictures, and a run whose maps are gone: each page says so."""
    bare = tmp_path / "no-pictures/VOC2012"
    bare.mkdir(parents=True)
    for folder in ("SegmentationClass", "ImageSets"):
        (bare / folder).symlink_to(sample_root / "VOC2012" / folder, target_is_directory=True)
    maps = tmp_path / "maps"
    shutil.copytree(sample_root / "activation/sample-cam/npz", maps)
    out = tmp_path / "results"
    kept = sample_root / "activation/sample-cam/npz"
    for root, name, source in (
        (bare.parent, "no-pictures", kept),
        (sample_root, "gone-maps", maps),
    ):
        result = run_cli("sweep", "--data-root", root, "--split", "val", "--activation", source,
                         "--activation-format", "npz", "--allow-extra-maps", "--thresholds",
                         "0.1,0.3", "--name", name, "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.stderr
    shutil.rmtree(maps)
    site = tmp_path / "site"
    render_site(out, site, gallery_images=2, draws=10)
    runs = pd.read_parquet(out / "runs.parquet").set_index("method")
    expected = {
        "no-pictures": "No gallery: the data root \u2026/no-pictures has no pictures "
        "(looked for JPEGImages).",
        "gone-maps": "No gallery: its inputs are not on this machine as recorded: activation "
        "folder not found (\u2026/maps).",
    }
    for name, text in expected.items():
        page.goto((site / "runs" / f"{runs.loc[name].run_id}.html").as_uri())
        assert page.errors == []
        assert page.locator("#gallery").is_visible()
        assert page.locator(".gallery-missing").inner_text() == text
        assert page.locator(".gallery-row").count() == 0
