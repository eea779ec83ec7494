"""`wsssbed datasets prepare`: the layout the specs read, built from official files.

Every preparer reads folders or archives (`.zip`, `.tar`, `.tar.gz`; extracted with
`wsssbed.io.archive`'s checks) and writes below a staging folder beside `out`, whose files
are moved into `out` only when everything is written and every written split has been
read back through its spec; a failure leaves nothing that looks prepared, and a run
killed outright leaves a staging folder that the next run removes (`wsssbed.io.staging`).
`out` is new, empty, or a data root prepared before (`wsssbed.io.ownership`: its files
are replaced, a user's files beside them are kept); anything else is refused before any
work. Image ids from split lists and file names are checked (`wsssbed.io.names.check_id`)
and every written path stays below `out`. Errors name an archive's member as
`ARCHIVE: MEMBER`. `PREPARED.toml` in
the root records the dataset, the sources (path, size, and sha256 for archives), the
split sizes and the wsssbed version. Pictures and unchanged masks are hard-linked when
the source is on the same disk, copied otherwise.

What each dataset takes (see docs/datasets.md):

- `voc2012`: VOC2012 trainval (`VOCdevkit/VOC2012`) and optionally SBD
  (`benchmark_RELEASE/dataset`): `SegmentationClassAug` holds VOC's mask where VOC has
  one and SBD's `cls/<id>.mat` otherwise; `train_aug` = (SBD train + SBD val + VOC
  train) - VOC val. `SegmentationClass` keeps VOC's original masks.
- `coco2014`: `instances_{train,val}2014.json` (painted by `wsssbed.datasets.coco`), or
  folders of PNG masks in either layout: contiguous class ids 0..80, or raw COCO
  category ids (values up to 90 with gaps), which are mapped to class ids.
- `cocostuff`: the official `stuffthingmaps_trainval2017` PNGs (0-based COCO ids 0..181,
  255 unlabelled; the spec's lookup maps them) and the `train2017`/`val2017` pictures.
- `ade20k`, `context`, `context59`: the PNG layouts mmsegmentation's converters write
  (ADE20K's official `ADEChallengeData2016` already is one); checked and linked.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path, PurePosixPath

import numpy as np
import tomli_w

from wsssbed.datasets import get_dataset
from wsssbed.datasets.local import LocalDataset, labels_from_mask, read_id_list
from wsssbed.datasets.spec import DatasetSpec
from wsssbed.errors import InputError
from wsssbed.io.archive import extract
from wsssbed.io.digest import file_sha256
from wsssbed.io.imageio import read_png_array, write_png_atomic, write_text
from wsssbed.io.matfile import read_struct_field
from wsssbed.io.names import check_id
from wsssbed.io.outputs import inside, naming
from wsssbed.io.ownership import OutputFolder
from wsssbed.io.staging import Staging, beside, remove_stale

Progress = Callable[[int, int], None]
RECORD = "PREPARED.toml"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
SOURCES = ".sources"  # archives are extracted below the staging folder, one folder each


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def _place(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (a copy across disks)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        with naming(target):
            shutil.copyfile(source, target)


def _find_folder(roots: list[Path], name: str, holding: str) -> Path | None:
    """The first folder called `name` below any root that has a child `holding`."""
    for root in roots:
        if root.is_dir():
            candidates = [root] if root.name == name else []
            candidates += sorted(root.rglob(name))
            for folder in candidates:
                if folder.is_dir() and (folder / holding).exists():
                    return folder
    return None


def _place_files(pairs: list[tuple[Path, Path]], progress: Progress | None) -> None:
    for done, (source, target) in enumerate(pairs, start=1):
        _place(source, target)
        if progress is not None:
            progress(done, len(pairs))


def _write_lines(path: Path, lines: list[str]) -> None:
    write_text(path, "".join(f"{line}\n" for line in lines))


def _label_lines(
    labels: dict[str, tuple[int, ...]], spec: DatasetSpec, ids: list[str]
) -> list[str]:
    """`image_id c1 c2 ...` lines (0-based foreground keys, as WSSS repositories write)."""
    keys = {i: spec.foreground_keys(np.array(labels[i], dtype=np.int64)).tolist() for i in ids}
    return [" ".join([i, *map(str, keys[i])]) for i in ids]


# --- PASCAL VOC 2012 + SBD ----------------------------------------------------------------


def _read_sbd_mask(path: Path, spec: DatasetSpec) -> np.ndarray:
    """SBD's `cls/<id>.mat`: the `GTcls.Segmentation` array (integer class ids, no void),
    its declared type, size and values checked before anything is allocated."""
    return read_struct_field(path, "GTcls", "Segmentation", spec.num_classes - 1)


def _prepare_voc(sources: list[Path], out: Path, spec: DatasetSpec, progress) -> dict[str, int]:
    voc = _find_folder(sources, "VOC2012", "SegmentationClass")
    if voc is None:
        raise InputError("no VOC2012 folder with SegmentationClass in the sources (VOCtrainval)")
    sbd = _find_folder(sources, "dataset", "cls")
    target = out / "VOC2012"
    lists = voc / "ImageSets/Segmentation"
    splits = {name: read_id_list(lists / f"{name}.txt") for name in ("train", "val")}
    if sbd is not None:
        sbd_ids = read_id_list(sbd / "train.txt") + read_id_list(sbd / "val.txt")
        splits["train_aug"] = sorted((set(sbd_ids) | set(splits["train"])) - set(splits["val"]))
    pictures = sorted((voc / "JPEGImages").glob("*.jpg"))
    originals = sorted((voc / "SegmentationClass").glob("*.png"))
    _place_files(
        [(p, target / "JPEGImages" / p.name) for p in pictures]
        + [(p, target / "SegmentationClass" / p.name) for p in originals],
        progress,
    )
    labels: dict[str, tuple[int, ...]] = {}
    wanted = sorted({image_id for ids in splits.values() for image_id in ids})
    for done, image_id in enumerate(wanted, start=1):
        voc_mask = voc / "SegmentationClass" / f"{image_id}.png"
        if voc_mask.is_file():
            mask = read_png_array(voc_mask)
        elif sbd is not None:
            mask = _read_sbd_mask(sbd / "cls" / f"{image_id}.mat", spec)
        else:
            raise InputError(f"{image_id} is listed in a split but has no mask", voc_mask)
        if sbd is not None:
            aug = inside(target, "SegmentationClassAug", f"{image_id}.png")
            write_png_atomic(aug, mask, spec.palette())
        labels[image_id] = labels_from_mask(mask, spec)
        if progress is not None:
            progress(done, len(wanted))
    for name, ids in splits.items():
        _write_lines(target / "ImageSets/Segmentation" / f"{name}.txt", ids)
        _write_lines(target / "cls_labels" / f"{name}_cls.txt", _label_lines(labels, spec, ids))
    return {name: len(ids) for name, ids in splits.items()}


# --- COCO 2014 ----------------------------------------------------------------------------


def coco_mask_layout(values: set[int], spec: DatasetSpec) -> str:
    """`contiguous` (class ids 0..80) or `raw` (COCO category ids), from the values seen.

    Raises:
        InputError: values that fit neither, or too few to tell the layouts apart.
    """
    values = values - {0, spec.ignore_index}
    raw = set(spec.category_ids)
    fits_contiguous = values <= set(range(1, spec.num_classes))
    fits_raw = values <= raw
    if fits_contiguous and not fits_raw:
        return "contiguous"
    if fits_raw and not fits_contiguous:
        return "raw"
    if not fits_raw and not fits_contiguous:
        raise InputError(
            f"mask values {sorted(values - raw - set(range(spec.num_classes)))[:10]} fit "
            "neither the contiguous 0..80 layout nor raw COCO category ids"
        )
    raise InputError(
        "cannot tell the layout: every value seen is both a class id (0..80) and a COCO "
        "category id; give all of a split's masks"
    )


def _split_of(name: str) -> str | None:
    return next((s for s in ("train", "val") if s in name.lower()), None)


def _prepare_coco(sources: list[Path], out: Path, spec: DatasetSpec, progress) -> dict[str, int]:
    from wsssbed.datasets.coco import convert_coco

    counts = {}
    for source in sources:
        split = _split_of(source.name)
        if source.is_file() and source.suffix == ".json":
            if split is None:
                raise InputError("cannot tell train from val in the file name", source)
            counts[split] = convert_coco(source, out, split, spec, progress)
            continue
        pngs = sorted(source.rglob("*.png")) if source.is_dir() else []
        jpgs = sorted(source.rglob("*.jpg")) if source.is_dir() else []
        if pngs:
            if split is None:
                raise InputError("cannot tell train from val in the folder name", source)
            counts[split] = _coco_masks(pngs, out, split, spec, progress, source)
        elif jpgs:
            folder = _split_of(jpgs[0].name) or split
            if folder is None:
                raise InputError("cannot tell train from val for these pictures", source)
            _place_files([(p, out / f"{folder}2014" / p.name) for p in jpgs], progress)
        else:
            raise InputError("not an instances JSON, a mask folder or a picture folder", source)
    if not counts:
        raise InputError("no COCO annotations among the sources (instances JSON or masks)")
    return counts


def _coco_masks(pngs: list[Path], out: Path, split: str, spec, progress, source: Path) -> int:
    """Masks in either layout -> contiguous class-id masks, with the split's lists."""
    paths = {p.stem: p for p in pngs}
    seen: set[int] = set()  # a first pass decides the layout from every value present
    for path in pngs:
        mask = read_png_array(path)
        seen.update(np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist())
    try:
        layout = coco_mask_layout(seen, spec)
    except InputError as exc:
        raise InputError(exc.problem, source) from None
    table = np.arange(256, dtype=np.uint8)
    if layout == "raw":
        table[:] = spec.ignore_index
        table[0] = 0
        table[list(spec.category_ids)] = np.arange(1, spec.num_classes)
    ids = sorted(check_id(image_id, "image id", path) for image_id, path in paths.items())
    labels = {}
    for done, image_id in enumerate(ids, start=1):
        mask = table[read_png_array(paths[image_id])]
        target = inside(out, "SegmentationClass", f"{split}2014", f"{image_id}.png")
        write_png_atomic(target, mask, spec.palette())
        labels[image_id] = labels_from_mask(mask, spec)
        if progress is not None:
            progress(done, len(ids))
    _write_lines(out / "ImageSets" / f"{split}.txt", ids)
    _write_lines(out / "cls_labels" / f"{split}_cls.txt", _label_lines(labels, spec, ids))
    return len(ids)


# --- COCO-Stuff, ADE20K, PASCAL Context: official or mmsegmentation PNG layouts -----------


def _files_in(roots: list[Path], folder: str, suffix: str) -> list[Path]:
    """Files `*<suffix>` directly inside any folder called `folder` below the roots."""
    return sorted(f for r in roots if r.is_dir() for f in r.rglob(f"{folder}/*{suffix}"))


def _prepare_cocostuff(sources, out: Path, spec: DatasetSpec, progress) -> dict[str, int]:
    counts = {}
    for split in spec.splits:
        masks = _files_in(sources, split, ".png")
        if not masks:
            continue
        pairs = [(p, out / "annotations" / split / p.name) for p in masks]
        pairs += [(p, out / "images" / split / p.name) for p in _files_in(sources, split, ".jpg")]
        _place_files(pairs, progress)
        ids = [p.stem for p in masks]
        _write_lines(out / "splits" / f"{split}.txt", ids)
        counts[split] = len(ids)
    if not counts:
        raise InputError(
            f"no stuffthingmaps PNGs in {', '.join(f'{s}/' for s in spec.splits)} of the sources"
        )
    return counts


def _prepare_converted(sources, out: Path, spec: DatasetSpec, progress) -> dict[str, int]:
    """Link a converted layout found below a source into `out` (the spec's first root)."""
    for source in sources:
        for relative in spec.roots:
            root = source / relative
            splits = {}
            for split in spec.splits:
                local = LocalDataset(spec, root, split)
                try:
                    splits[split] = local.ids
                except InputError:
                    continue
            if not splits:
                continue
            files = sorted(p for p in root.rglob("*") if p.is_file())
            _place_files([(p, out / p.relative_to(root)) for p in files], progress)
            return {split: len(ids) for split, ids in splits.items()}
    tried = ", ".join(s.folder for s in spec.ground_truth)
    raise InputError(f"no {spec.title} layout in the sources (looked for {tried})")


PREPARERS = {
    "voc2012": _prepare_voc,
    "coco2014": _prepare_coco,
    "cocostuff": _prepare_cocostuff,
    "ade20k": _prepare_converted,
    "context": _prepare_converted,
    "context59": _prepare_converted,
}


def _check(out: Path, spec: DatasetSpec, counts: dict[str, int], progress) -> None:
    """Read every prepared mask back through the spec (values, sizes) before committing."""
    for split in counts:
        local = LocalDataset(spec, out, split)
        for done, image_id in enumerate(local.ids, start=1):
            local.read_gt(image_id)
            if progress is not None:
                progress(done, len(local.ids))


def _describe(given: Path) -> dict:
    """A source as PREPARED.toml records it (files with their size and sha256)."""
    if given.is_dir():
        return {"path": str(given.resolve()), "kind": "folder"}
    kind = "archive" if _is_archive(given) else "file"
    return {"path": str(given.resolve()), "kind": kind, "bytes": given.stat().st_size,
            "sha256": file_sha256(given)}  # fmt: skip


def prepare(
    dataset: str, sources: list[Path], out: Path, progress: Progress | None = None
) -> dict[str, int]:
    """Build `out` for `dataset` from official files; returns images per split written.

    Staging folders beside `out` left by a killed earlier run are removed first.

    Raises:
        InputError: a bad source, naming the archive and its member (`VOCtrainval.tar:
            VOC2012/SegmentationClass/x.png: ...`) or the file of a source folder.
    """
    spec = get_dataset(dataset)
    if spec.name not in PREPARERS:
        raise InputError(f"no preparer for {spec.name!r}; built-in: {', '.join(PREPARERS)}")
    if not sources:
        raise InputError("give the official files with `--from` (folders or archives)")
    for source in sources:
        if not source.exists():
            raise InputError("not found", source)
    root = OutputFolder.claim(out, "datasets prepare", "data root")
    remove_stale(*beside(out))
    staging = Staging(*beside(out))
    try:
        counts = _prepare_in(staging.path, spec, sources, progress)
        root.commit(staging.path)
    except InputError as exc:
        raise _outside_staging(exc, staging.path, sources, out) from None
    finally:  # after the commit it holds only the marker and empty folders
        staging.discard()
    return counts


def _prepare_in(
    staging: Path, spec: DatasetSpec, sources: list[Path], progress: Progress | None
) -> dict[str, int]:
    """Everything `prepare` writes, below `staging`; returns images per split."""
    unpacked = []
    for index, source in enumerate(sources):
        if _is_archive(source):
            unpacked.append(extract(source, staging / SOURCES / str(index)))
        else:
            unpacked.append(source.resolve())
    counts = PREPARERS[spec.name](unpacked, staging, spec, progress)
    shutil.rmtree(staging / SOURCES, ignore_errors=True)
    _check(staging, spec, counts, progress)
    record = {
        "dataset": spec.name,
        "prepared": date.today().isoformat(),
        "wsssbed_version": _version(),
        "splits": counts,
        "sources": [_describe(source) for source in sources],
    }
    write_text(staging / RECORD, tomli_w.dumps(json.loads(json.dumps(record))))
    return counts


def _outside_staging(error: InputError, staging: Path, sources: list[Path], out: Path):
    """`error` naming what the user has: an archive's member as `ARCHIVE: MEMBER`, a
    prepared file by its place below `out`, instead of a path in the removed staging."""
    places = {staging / SOURCES / str(i): f"{s}: " for i, s in enumerate(sources)}
    places[staging] = f"{out}/"
    problem = error.problem
    for folder, readable in places.items():
        problem = problem.replace(f"{folder}/", readable)
    path = error.path
    if path is None or staging not in path.parents:
        return InputError(problem, path)
    relative = path.relative_to(staging)
    if relative.parts[0] == SOURCES and len(relative.parts) > 1:
        archive, member = sources[int(relative.parts[1])], relative.parts[2:]
        return InputError(f"{PurePosixPath(*member)}: {problem}" if member else problem, archive)
    return InputError(f"{relative.as_posix()} (not written): {problem}", out)


def _version() -> str:
    from wsssbed import __version__

    return __version__
