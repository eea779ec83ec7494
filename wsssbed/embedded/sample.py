"""The embedded sample: a small, deterministic VOC-layout dataset with maps that fail the
way real WSSS maps do.

Nothing is downloaded. `ensure_sample()` renders the dataset once into a cache folder
(`$WSSSBED_HOME/sample-v2`, default `~/.wsssbed/sample-v2`) and reuses it.

Each scene shows a known failure mode of activation maps and saliency maps:

- boat on water and train on rails: the activation spills onto the co-occurring
  background (water, rails), so a low threshold over-segments;
- aeroplane and sheep: the activation covers only the most discriminative part
  (the fuselage centre, one sheep's head), so a high threshold under-segments;
- person on horse and cat beside dog: the two classes' activations overlap, so the
  argmax confuses them near the contact;
- saliency misses thin parts (masts, legs) and fires on bright clutter.

Layout (what a VOC user already has, plus the maps):

    <root>/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation,cls_labels}
    <root>/activation/sample-cam/{irn-npy,png-per-class,npz}/
    <root>/saliency/sample-sal/<id>.png
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsssbed.activation import AUTO, ActivationMaps, write_activation
from wsssbed.datasets import get_dataset
from wsssbed.datasets.sanity import SYNTHETIC
from wsssbed.errors import InputError
from wsssbed.io.home import home
from wsssbed.io.imageio import write_text
from wsssbed.io.outputs import follow_umask
from wsssbed.io.ownership import OutputFolder
from wsssbed.saliency.maps import write_saliency

SAMPLE_VERSION = "v2"  # v2: marked synthetic (`datasets.sanity.SYNTHETIC`)
HEIGHT, WIDTH = 120, 160
SPLITS = {"train": 48, "val": 24}
METHOD = "sample-cam"
MAP_FORMATS = ("irn-npy", "png-per-class", "npz")  # the sample's maps, one folder each
SALIENCY = "sample-sal"
DATASET = "voc2012"  # the sample's layout and classes
DEFAULT_SPLIT = "train"
VOID_WIDTH = 1

# VOC class ids used by the scenes.
AEROPLANE, BIRD, BOAT, CAR, CAT = 1, 3, 4, 7, 8
DOG, HORSE, PERSON, SHEEP, TRAIN = 12, 13, 15, 17, 19

CLASS_COLOURS = {
    AEROPLANE: (200, 200, 210),
    BIRD: (120, 80, 40),
    BOAT: (180, 40, 40),
    CAR: (30, 90, 200),
    CAT: (230, 150, 60),
    DOG: (110, 70, 50),
    HORSE: (150, 100, 60),
    PERSON: (240, 190, 160),
    SHEEP: (235, 235, 225),
    TRAIN: (60, 160, 70),
}


@dataclass
class Scene:
    """One rendered sample image.

    Attributes:
        rgb: (H, W, 3) uint8 picture.
        gt: (H, W) uint8 class ids with a void band (255) around objects.
        cams: class id -> (H, W) float32 activation in [0, 1] (max 1).
        saliency: (H, W) uint8 saliency.
    """

    rgb: np.ndarray
    gt: np.ndarray
    cams: dict[int, np.ndarray]
    saliency: np.ndarray


def sample_root() -> Path:
    """Folder of the cached sample (not necessarily rendered yet)."""
    return home() / f"sample-{SAMPLE_VERSION}"


def default_to_sample(
    dataset: str | None, data_root: str | Path | None, split: str | None
) -> tuple[str, Path, str | None]:
    """(dataset, data root, split): as given when there is a data root (dataset voc2012 if
    none is named); without one, the embedded sample on split train unless one is given.

    Raises:
        InputError: a dataset other than the sample's without a data root.
    """
    if data_root is not None:
        return dataset or DATASET, Path(data_root), split
    if dataset not in (None, DATASET):
        raise InputError(
            f"dataset {dataset!r} needs `data_root` (the folder holding it); only "
            f"{DATASET} has an embedded sample"
        )
    return DATASET, ensure_sample(), split or DEFAULT_SPLIT


def sample_activation(root: Path, fmt: str) -> Path:
    """The sample's activation maps in format `fmt` (`auto`: its irn-npy maps)."""
    return root / "activation" / METHOD / ("irn-npy" if fmt == AUTO else fmt)


def sample_saliency(root: Path) -> Path:
    """The sample's saliency maps."""
    return root / "saliency" / SALIENCY


def ensure_sample(root: Path | None = None) -> Path:
    """Render the sample into `root` (default: the cache) unless present; return `root`.

    Rendering goes to a temporary folder that is renamed at the end, so an interrupted
    render leaves nothing behind.
    """
    root = sample_root() if root is None else root
    if (root / "COMPLETE").is_file():
        return root
    OutputFolder.claim(root, "sample", "sample folder")  # new or empty: someone's files stay
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    follow_umask(staging)
    try:
        render_sample(staging)
        write_text(staging / "COMPLETE", SAMPLE_VERSION + "\n")
        try:
            staging.rename(root)
        except OSError:  # another process finished first
            if not (root / "COMPLETE").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def render_sample(root: Path) -> None:
    """Write every file of the sample below `root` (deterministic: same bytes each time)."""
    spec = get_dataset("voc2012")
    voc = root / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "cls_labels"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    index = 0
    for split, count in SPLITS.items():
        ids, label_lines = [], []
        for _ in range(count):
            image_id = f"sample_{index:04d}"
            scene = render_scene(index)
            _write_scene(root, spec, image_id, scene)
            keys = sorted(c - 1 for c in scene.cams)
            ids.append(image_id)
            label_lines.append(" ".join([image_id, *map(str, keys)]))
            index += 1
        write_text(voc / f"ImageSets/Segmentation/{split}.txt", "\n".join(ids) + "\n")
        write_text(voc / f"cls_labels/{split}_cls.txt", "\n".join(label_lines) + "\n")
    write_text(root / "README.txt", __doc__ or "")
    write_text(root / SYNTHETIC, "wsssbed's synthetic sample: its split lists are its own\n")


def _write_scene(root: Path, spec, image_id: str, scene: Scene) -> None:
    voc = root / "VOC2012"
    Image.fromarray(scene.rgb).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
    mask = Image.fromarray(scene.gt, mode="L").convert("P")
    mask.putpalette(spec.palette())
    mask.save(voc / "SegmentationClass" / f"{image_id}.png")
    class_ids = np.array(sorted(scene.cams), dtype=np.int64)
    maps = ActivationMaps(class_ids, np.stack([scene.cams[c] for c in class_ids]))
    for fmt in MAP_FORMATS:
        write_activation(root / "activation" / METHOD / fmt, image_id, fmt, spec, maps)
    write_saliency(root / "saliency" / SALIENCY, image_id, scene.saliency)


# --------------------------------------------------------------------------- drawing


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = _grid()
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _box(y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    yy, xx = _grid()
    return (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)


def _blob(cy: float, cx: float, sy: float, sx: float) -> np.ndarray:
    yy, xx = _grid()
    return np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2)).astype(np.float32)


def _smooth(field: np.ndarray, passes: int = 3) -> np.ndarray:
    out = field.astype(np.float32)
    for _ in range(passes):
        padded = np.pad(out, 1, mode="edge")
        out = (
            padded[:-2, 1:-1]
            + padded[2:, 1:-1]
            + padded[1:-1, :-2]
            + padded[1:-1, 2:]
            + padded[1:-1, 1:-1]
        ) / 5.0
    return out


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.clip(cam, 0.0, None)
    return (cam / cam.max()).astype(np.float32)


class _Canvas:
    """Accumulates objects into a picture, a ground truth and a saliency map."""

    def __init__(self, rng: np.random.Generator, backdrop: np.ndarray) -> None:
        self.rng = rng
        self.rgb = backdrop.astype(np.float32)
        self.labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        self.salient = np.zeros((HEIGHT, WIDTH), dtype=np.float32)

    def paint(self, region: np.ndarray, colour: tuple[int, int, int]) -> None:
        self.rgb[region] = colour

    def add(self, cls: int, region: np.ndarray, salient: float = 1.0) -> None:
        self.paint(region, CLASS_COLOURS[cls])
        self.labels[region] = cls
        self.salient[region] = np.maximum(self.salient[region], salient)

    def finish(self, cams: dict[int, np.ndarray], clutter: np.ndarray | None = None) -> Scene:
        labels = self.labels
        edge = np.zeros_like(labels, dtype=bool)
        for shift_y, shift_x in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            moved = np.roll(labels, (shift_y, shift_x), axis=(0, 1))
            edge |= moved != labels
        gt = labels.copy()
        for _ in range(VOID_WIDTH - 1):
            edge |= np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
        gt[edge & ((labels > 0) | (np.roll(labels, 1, 0) > 0) | (np.roll(labels, 1, 1) > 0))] = 255
        saliency = self.salient.copy()
        if clutter is not None:
            saliency = np.maximum(saliency, clutter)
        saliency = _smooth(saliency, 2) + self.rng.normal(0, 0.04, saliency.shape)
        noise = self.rng.normal(0, 8, self.rgb.shape)
        rgb = np.clip(self.rgb + noise, 0, 255).astype(np.uint8)
        sal_u8 = np.clip(np.rint(saliency * 255), 0, 255).astype(np.uint8)
        return Scene(rgb, gt, {c: _normalise(cam) for c, cam in cams.items()}, sal_u8)


def _sky_and(lower: tuple[int, int, int], horizon: int) -> np.ndarray:
    backdrop = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
    backdrop[:] = (135, 185, 235)
    backdrop[horizon:] = lower
    return backdrop


def _scene_boat(rng: np.random.Generator) -> Scene:
    horizon = int(rng.integers(60, 75))
    canvas = _Canvas(rng, _sky_and((40, 80, 140), horizon))
    cx = float(rng.uniform(50, 110))
    hull = _ellipse(horizon, cx, 10, 28) & _box(horizon - 10, 0, horizon + 6, WIDTH)
    mast = _box(horizon - 40, cx - 1.5, horizon - 6, cx + 1.5)
    canvas.add(BOAT, hull)
    canvas.add(BOAT, mast, salient=0.15)  # saliency misses the thin mast
    water = _box(horizon, 0, HEIGHT, WIDTH)
    cam = _blob(horizon, cx, 6, 20) + 0.55 * _smooth(water.astype(np.float32), 4) * _blob(
        horizon + 20, cx, 25, 60
    )
    return canvas.finish({BOAT: cam})


def _scene_train(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((110, 140, 90), 55))
    top = float(rng.uniform(40, 55))
    body = _box(top, 15, top + 30, 140)
    rails = _box(top + 30, 0, top + 36, WIDTH)
    canvas.paint(rails, (90, 90, 95))
    canvas.add(TRAIN, body)
    cam = _blob(top + 15, 40, 12, 30) + 0.5 * _blob(top + 33, 80, 4, 70)
    return canvas.finish({TRAIN: cam}, clutter=0.6 * rails.astype(np.float32))


def _scene_person_horse(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((100, 150, 70), 60))
    cx = float(rng.uniform(60, 100))
    horse = (
        _ellipse(80, cx, 14, 32) | _box(88, cx - 26, 112, cx - 20) | _box(88, cx + 20, 112, cx + 26)
    )
    rider = _box(45, cx - 6, 74, cx + 6) | _ellipse(40, cx, 6, 6)
    canvas.add(HORSE, horse)
    canvas.add(PERSON, rider)
    person_cam = _blob(40, cx, 6, 6) + 0.35 * _blob(70, cx, 10, 14)  # spills on the horse
    horse_cam = _blob(80, cx + 8, 10, 22) + 0.3 * _blob(58, cx, 10, 6)
    return canvas.finish({PERSON: person_cam, HORSE: horse_cam})


def _scene_cat_dog(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((170, 150, 120), 40))
    gap = float(rng.uniform(0, 12))
    cat = _ellipse(80, 50, 18, 24)
    dog = _ellipse(78, 104 + gap, 22, 28)
    canvas.add(CAT, cat)
    canvas.add(DOG, dog)
    cat_cam = _blob(80, 50, 14, 18) + 0.6 * _blob(78, 90, 12, 12)  # confused with the dog
    dog_cam = _blob(78, 110 + gap, 16, 20) + 0.5 * _blob(80, 62, 12, 10)
    return canvas.finish({CAT: cat_cam, DOG: dog_cam})


def _scene_aeroplane(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((135, 185, 235), HEIGHT))
    cy = float(rng.uniform(40, 80))
    body = _ellipse(cy, 80, 7, 50) | (_ellipse(cy, 80, 30, 9) & _box(cy - 30, 70, cy + 30, 90))
    canvas.add(AEROPLANE, body)
    cam = _blob(cy, 80, 5, 14)  # only the fuselage centre
    return canvas.finish({AEROPLANE: cam})


def _scene_sheep(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((90, 160, 60), 45))
    first = _ellipse(80, 45, 14, 22)
    second = _ellipse(88, 115, 12, 20)
    canvas.add(SHEEP, first)
    canvas.add(SHEEP, second, salient=0.45)  # the second sheep is barely salient
    cam = _blob(76, 30, 7, 8) + 0.35 * _blob(88, 115, 8, 12)
    return canvas.finish({SHEEP: cam})


def _scene_car(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((80, 80, 85), 70))
    x0 = float(rng.uniform(20, 60))
    body = _box(70, x0, 95, x0 + 70) | _box(55, x0 + 15, 72, x0 + 50)
    canvas.add(CAR, body)
    road_glare = _box(100, 0, 110, WIDTH).astype(np.float32) * 0.7
    cam = _blob(82, x0 + 35, 12, 30) + 0.3 * _blob(105, x0 + 35, 4, 40)
    return canvas.finish({CAR: cam}, clutter=road_glare)


def _scene_birds(rng: np.random.Generator) -> Scene:
    canvas = _Canvas(rng, _sky_and((135, 185, 235), HEIGHT))
    centres = [(float(rng.uniform(20, 100)), float(rng.uniform(20, 140))) for _ in range(3)]
    cam = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    for cy, cx in centres:
        canvas.add(BIRD, _ellipse(cy, cx, 5, 9))
        cam += _blob(cy, cx, 4, 6)
    return canvas.finish({BIRD: cam})


SCENES: tuple[Callable[[np.random.Generator], Scene], ...] = (
    _scene_boat,
    _scene_train,
    _scene_person_horse,
    _scene_cat_dog,
    _scene_aeroplane,
    _scene_sheep,
    _scene_car,
    _scene_birds,
)


def render_scene(index: int) -> Scene:
    """Render scene number `index` (deterministic)."""
    rng = np.random.default_rng(20240 + index)
    return SCENES[index % len(SCENES)](rng)
