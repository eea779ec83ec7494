"""`wsssbed pseudo-labels`, `clip-activations` and `saliency`: write maps from generators."""

from __future__ import annotations

from pathlib import Path

import typer

from wsssbed.cli.app import app, kept_on_interrupt, reported_errors
from wsssbed.cli.common import (
    ADDRESS_OPTION,
    BACKEND_OPTION,
    DATA_ROOT_OPTION,
    DATASET_OPTION,
    DEVICE_OPTION,
    FORMAT_OPTION,
    LABELS_OPTION,
    SPLIT_OPTION,
    out,
    picked_format,
    progress_bar,
)
from wsssbed.errors import WsssbedError

BACKENDS = ("local", "ray")
FOUNDATION = ("sam-refine", "sam-box")  # label generators beyond the sweep rules
SAM_CHECKPOINT_OPTION = typer.Option(None, help="SAM weights (.pth); never downloaded.")
SAM_MODEL_OPTION = typer.Option(
    "auto", help="auto (read off the checkpoint), or vit_b, vit_l, vit_h to insist on one."
)
POINTS_PER_SIDE_OPTION = typer.Option(32, help="SAM automatic masks: prompt grid per side.")
PRED_IOU_OPTION = typer.Option(0.88, help="SAM automatic masks: predicted-IoU filter.")
STABILITY_OPTION = typer.Option(0.95, help="SAM automatic masks: stability-score filter.")
SAM_MASKS_OPTION = typer.Option(
    "fast", help="SAM automatic masks: fast, or exact (segment-anything's generator as shipped)."
)
POINTS_PER_BATCH_OPTION = typer.Option(
    64, help="SAM automatic masks: point prompts per decoder call (memory, not results)."
)
SAM_PRECISION_OPTION = typer.Option(
    "auto", help="SAM image encoder on the fast path: auto (bf16 on CUDA), fp32 or bf16."
)
CLIP_WEIGHTS_OPTION = typer.Option(
    None, help="open_clip weights file (.bin, .pt, .safetensors); never downloaded."
)
CLIP_MODEL_OPTION = typer.Option(None, help="open_clip architecture, e.g. ViT-B-16.")
CLIP_CONFIG_OPTION = typer.Option(None, help="open_clip model config (JSON), for other ViTs.")
CLIP_TEMPLATE_OPTION = typer.Option("a photo of a {}.", help="Prompt template, one {}.")
DETECTOR_WEIGHTS_OPTION = typer.Option(
    None, help="Grounding DINO folder (transformers' save_pretrained); never downloaded."
)
BOX_THRESHOLD_OPTION = typer.Option(0.35, help="Grounding DINO: box score threshold.")
TEXT_THRESHOLD_OPTION = typer.Option(0.25, help="Grounding DINO: token threshold.")
PROMPT_OPTION = typer.Option(
    "labels", help="Grounding DINO prompt: labels (each image's labels) or all (every class)."
)
BOX_CLASSES_OPTION = typer.Option(
    "detector", help="A detected box's class: detector (its grounded name) or clip."
)
WORKERS_OPTION = typer.Option(
    0, help="Processes generating side by side, each loading its own models; 0: this one."
)
REFINE_OPTION = typer.Option(
    "none", help="crf: refine the labels with a dense CRF over the picture (IRN's parameters)."
)


@app.command("pseudo-labels")
def pseudo_labels(
    out_dir: Path = typer.Option(..., "--out", help="Folder of the pseudo-labels."),
    dataset: str = DATASET_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    split: str = SPLIT_OPTION,
    generator: str = typer.Option(
        ..., help="bg-threshold, power-bg, saliency-rule, sam-refine or sam-box."
    ),
    base: str = typer.Option(
        "bg-threshold", help="sam-refine / sam-box: the classic generator of the CAM label."
    ),
    activation: Path = typer.Option(None, help="Folder of activation maps."),
    activation_format: str = FORMAT_OPTION,
    threshold: float = typer.Option(
        None,
        help="bg-threshold (also sam-refine, sam-box from CAMs with --base bg-threshold): the "
        "background score in [0, 1]; required for them, no default: take it from a sweep's "
        "best or recommended point.",
        show_default=False,
    ),
    alpha: float = typer.Option(
        None,
        help="power-bg (also --base power-bg): the exponent; required for it, no default.",
        show_default=False,
    ),
    saliency: Path = typer.Option(None, help="saliency-rule: folder of saliency PNGs."),
    sal_threshold: float = typer.Option(0.2, help="saliency-rule: saliency threshold."),
    atm_threshold: float = typer.Option(0.1, help="saliency-rule: activation threshold."),
    ignore_label: bool = typer.Option(
        True,
        help="saliency-rule: salient background becomes 255 (ignored). On by default, as "
        "WSSS-BED's released scripts run run.py (IGNORE_LABEL=True) to make training labels; "
        "sweep defaults it off (run.py's own default) unless a pipeline manifest sets it: "
        "give both commands the same choice to write the labels you swept.",
    ),
    without_saliency: bool = typer.Option(False, help="saliency-rule without saliency maps."),
    boxes: str = typer.Option(
        None,
        help="sam-box: a detector's boxes (JSON: id -> \\[{box, label, score}]), or "
        "grounding-dino to detect them with --detector-weights.",
    ),
    detector_weights: Path = DETECTOR_WEIGHTS_OPTION,
    box_threshold: float = BOX_THRESHOLD_OPTION,
    text_threshold: float = TEXT_THRESHOLD_OPTION,
    prompt: str = PROMPT_OPTION,
    box_classes: str = BOX_CLASSES_OPTION,
    min_box_pixels: int = typer.Option(16, help="sam-box: smallest CAM region giving a box."),
    sam_checkpoint: Path = SAM_CHECKPOINT_OPTION,
    sam_model: str = SAM_MODEL_OPTION,
    points_per_side: int = POINTS_PER_SIDE_OPTION,
    pred_iou_thresh: float = PRED_IOU_OPTION,
    stability_thresh: float = STABILITY_OPTION,
    sam_masks: str = SAM_MASKS_OPTION,
    sam_precision: str = SAM_PRECISION_OPTION,
    points_per_batch: int = POINTS_PER_BATCH_OPTION,
    clip_weights: Path = CLIP_WEIGHTS_OPTION,
    clip_model: str = CLIP_MODEL_OPTION,
    clip_config: Path = CLIP_CONFIG_OPTION,
    clip_template: str = CLIP_TEMPLATE_OPTION,
    refine: str = REFINE_OPTION,
    labels: str = LABELS_OPTION,
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """Write pseudo-labels (palette PNGs, 255 = ignore); resumable, never half-written."""
    from wsssbed.embedded.sample import default_to_sample, sample_activation, sample_saliency
    from wsssbed.eval.rules import RULES
    from wsssbed.generators.base import make_generator
    from wsssbed.generators.sam_box import SamBoxGenerator
    from wsssbed.generators.sam_refine import SamRefineGenerator
    from wsssbed.registry import unknown_name

    with reported_errors():
        choices = (*RULES.names(), *FOUNDATION)
        if generator not in choices:
            raise WsssbedError(unknown_name(generator, choices, "generator"))
        classic_name = generator if generator in RULES else base
        uses_cams = not (generator == "sam-box" and boxes is not None)
        if data_root is None:
            dataset, data_root, split = default_to_sample(dataset, data_root, split)
            if uses_cams:
                activation = activation or sample_activation(data_root, activation_format)
            if "saliency-rule" in (generator, base) and not without_saliency:
                saliency = saliency or sample_saliency(data_root)
        classic = None
        if uses_cams:
            classic = make_generator(
                classic_name,
                threshold=threshold,
                alpha=alpha,
                sal_threshold=sal_threshold,
                atm_threshold=atm_threshold,
                ignore_label=ignore_label,
                without_saliency=without_saliency,
            )
        made = classic
        if generator in FOUNDATION:
            sam = _sam_options(generator, sam_checkpoint, sam_model, points_per_side,
                               pred_iou_thresh, stability_thresh, sam_masks,
                               sam_precision, points_per_batch)  # fmt: skip
        if generator == "sam-refine":
            made = SamRefineGenerator(classic, sam)
        elif generator == "sam-box":
            clip = _clip_options(clip_weights, clip_model, clip_config, clip_template, None)
            detector = None
            if boxes == "grounding-dino":
                detector = _detector_options(detector_weights, box_threshold, text_threshold,
                                             prompt, box_classes)  # fmt: skip
            elif detector_weights is not None:
                raise WsssbedError("--detector-weights goes with --boxes grounding-dino")
            box_file = None if boxes in (None, "grounding-dino") else Path(boxes)
            made = SamBoxGenerator(sam, box_file, None if boxes else classic, clip,
                                   min_box_pixels, detector)  # fmt: skip
        made = _refined(made, refine)
        if made.rule.needs_maps and activation is None:
            raise WsssbedError("give --activation (the folder of activation maps)")
        if made.rule.needs_maps:
            activation_format = picked_format(activation, activation_format)
        if made.rule.needs_saliency and saliency is None:
            raise WsssbedError("saliency-rule needs --saliency (or --without-saliency)")
        job = _generation_job(
            made, dataset, data_root, split, out_dir, labels, device,
            activation=activation if made.rule.needs_maps else None,
            activation_format=activation_format,
            saliency=saliency if made.rule.needs_saliency else None,
        )  # fmt: skip
        _run_generation(job, backend, address, workers, "pseudo-labels", "label maps")


def _refined(generator, refine: str):
    """`generator`, followed by the refinement `refine` names (`none` or `crf`)."""
    if refine == "none":
        return generator
    if refine != "crf":
        raise WsssbedError(f"--refine {refine!r}: use none or crf")
    from wsssbed.generators.crf import CrfRefined

    return CrfRefined(generator)


@app.command("refine")
def refine_labels(
    pred: Path = typer.Option(..., help="Folder of label maps `<id>.png` to refine."),
    out_dir: Path = typer.Option(..., "--out", help="Folder of the refined label maps."),
    method: str = typer.Option("crf", help="crf: dense CRF over the picture (IRN's parameters)."),
    dataset: str = DATASET_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    split: str = SPLIT_OPTION,
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """Refine label maps already on disk (pseudo-labels or a segmenter's output)."""
    from wsssbed.generators.crf import GivenLabels

    with reported_errors():
        made = _refined(GivenLabels(), method)
        job = _generation_job(made, dataset, data_root, split, out_dir, "masks", device,
                              predictions=pred, command="refine")  # fmt: skip
        _run_generation(job, backend, address, workers, "refining", "label maps")


@app.command("clip-activations")
def clip_activations(
    out_dir: Path = typer.Option(..., "--out", help="Folder of the activation maps (npz)."),
    clip_weights: Path = CLIP_WEIGHTS_OPTION,
    clip_model: str = CLIP_MODEL_OPTION,
    clip_config: Path = CLIP_CONFIG_OPTION,
    clip_template: str = CLIP_TEMPLATE_OPTION,
    dataset: str = DATASET_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    split: str = SPLIT_OPTION,
    labels: str = LABELS_OPTION,
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """CLIP Grad-CAM activation maps of each image's labels, as npz for `sweep`."""
    from wsssbed.generators.clip_cam import ClipCamGenerator

    with reported_errors():
        clip = _clip_options(clip_weights, clip_model, clip_config, clip_template, "clip-cam")
        job = _generation_job(ClipCamGenerator(clip), dataset, data_root, split, out_dir,
                              labels, device)  # fmt: skip
        _run_generation(job, backend, address, workers, "CLIP activations", "activation maps")


@app.command("saliency")
def saliency_maps(
    out_dir: Path = typer.Option(..., "--out", help="Folder of the saliency PNGs."),
    generator: str = typer.Option("sam-clip", help="sam-clip (SAM masks x CLIP objectness)."),
    sam_checkpoint: Path = SAM_CHECKPOINT_OPTION,
    sam_model: str = SAM_MODEL_OPTION,
    points_per_side: int = POINTS_PER_SIDE_OPTION,
    pred_iou_thresh: float = PRED_IOU_OPTION,
    stability_thresh: float = STABILITY_OPTION,
    sam_masks: str = SAM_MASKS_OPTION,
    sam_precision: str = SAM_PRECISION_OPTION,
    points_per_batch: int = POINTS_PER_BATCH_OPTION,
    clip_weights: Path = CLIP_WEIGHTS_OPTION,
    clip_model: str = CLIP_MODEL_OPTION,
    clip_config: Path = CLIP_CONFIG_OPTION,
    clip_template: str = CLIP_TEMPLATE_OPTION,
    dataset: str = DATASET_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    split: str = SPLIT_OPTION,
    device: str = DEVICE_OPTION,
    workers: int = WORKERS_OPTION,
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
) -> None:
    """Training-free saliency maps (8-bit PNGs) to pair with any activation method."""
    from wsssbed.generators.sam_clip import SamClipSaliency

    with reported_errors():
        if generator != "sam-clip":
            raise WsssbedError(f"--generator {generator!r}: use sam-clip")
        sam = _sam_options(generator, sam_checkpoint, sam_model, points_per_side,
                           pred_iou_thresh, stability_thresh, sam_masks,
                           sam_precision, points_per_batch)  # fmt: skip
        clip = _clip_options(clip_weights, clip_model, clip_config, clip_template, generator)
        job = _generation_job(SamClipSaliency(sam, clip), dataset, data_root, split, out_dir,
                              "masks", device)  # fmt: skip
        _run_generation(job, backend, address, workers, "saliency", "saliency maps")


def _sam_options(
    generator: str, checkpoint: Path | None, model_type: str, points_per_side: int,
    pred_iou_thresh: float, stability_thresh: float, path: str, precision: str,
    points_per_batch: int,
):  # fmt: skip
    from wsssbed.models.options import SamOptions
    from wsssbed.models.sam import SAM_MODEL_CHOICES
    from wsssbed.models.sam_masks import MaskSettings

    if checkpoint is None:
        raise WsssbedError(f"{generator} needs --sam-checkpoint (a local SAM .pth file)")
    if model_type not in SAM_MODEL_CHOICES:
        raise WsssbedError(f"--sam-model {model_type!r}: use one of {', '.join(SAM_MODEL_CHOICES)}")
    masks = MaskSettings(points_per_side, pred_iou_thresh, stability_thresh, path, precision,
                         points_per_batch)  # fmt: skip
    return SamOptions(checkpoint, model_type, masks)


def _detector_options(
    weights: Path | None, box_threshold: float, text_threshold: float, prompt: str,
    box_classes: str,
):  # fmt: skip
    from wsssbed.models.options import BOX_CLASSES, PROMPTS, DetectorOptions

    if weights is None:
        raise WsssbedError("Grounding DINO boxes need --detector-weights (a local folder)")
    if prompt not in PROMPTS:
        raise WsssbedError(f"--prompt {prompt!r}: use one of {', '.join(PROMPTS)}")
    if box_classes not in BOX_CLASSES:
        raise WsssbedError(f"--box-classes {box_classes!r}: use one of {', '.join(BOX_CLASSES)}")
    for name, value in (("--box-threshold", box_threshold), ("--text-threshold", text_threshold)):
        if not 0 <= value < 1:
            raise WsssbedError(f"{name} {value:g}: use a probability in [0, 1)")
    return DetectorOptions(weights, box_threshold, text_threshold, prompt, box_classes)


@app.command("boxes")
def boxes_command(
    out_file: Path = typer.Option(
        ..., "--out", help="Boxes JSON to write: a new file (an existing one is never replaced)."
    ),
    detector_weights: Path = DETECTOR_WEIGHTS_OPTION,
    box_threshold: float = BOX_THRESHOLD_OPTION,
    text_threshold: float = TEXT_THRESHOLD_OPTION,
    prompt: str = PROMPT_OPTION,
    box_classes: str = BOX_CLASSES_OPTION,
    dataset: str = DATASET_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    split: str = SPLIT_OPTION,
    labels: str = LABELS_OPTION,
    device: str = DEVICE_OPTION,
) -> None:
    """Grounding DINO's boxes for a split, as the JSON `sam-box --boxes FILE` reads."""
    from wsssbed.generators.grounded import detect_boxes, write_boxes
    from wsssbed.io.digest import file_sha256
    from wsssbed.io.outputs import check_output_file

    with reported_errors():
        options = _detector_options(detector_weights, box_threshold, text_threshold, prompt,
                                    box_classes)  # fmt: skip
        check_output_file(out_file, "boxes JSON")
        local = _local_dataset(dataset, data_root, split)
        with progress_bar(f"boxes {local.spec.name}/{local.split_name}") as update:
            found = detect_boxes(local, options, labels, device, update)
        write_boxes(out_file, found)
        count = sum(len(v) for v in found.values())
        out.print(
            f"{count:,} boxes in {len(found):,} images written to {out_file} "
            f"(sha256 {file_sha256(out_file)})",
            soft_wrap=True,
        )


def _clip_options(
    weights: Path | None, model: str | None, config: Path | None, template: str,
    needed_by: str | None,
):  # fmt: skip
    """CLIP options, or None when no weights are given and nothing needs them."""
    from wsssbed.models.options import ClipOptions

    if weights is None:
        if needed_by is not None:
            raise WsssbedError(f"{needed_by} needs --clip-weights (a local open_clip file)")
        if model is not None or config is not None:
            raise WsssbedError("--clip-model / --clip-config need --clip-weights")
        return None
    return ClipOptions(weights, model, config, template)


def _generation_job(
    generator, dataset: str, data_root: Path | None, split: str | None, out_dir: Path,
    labels: str, device: str, **inputs,
):  # fmt: skip
    from wsssbed.generators.writer import GenerationJob

    local = _local_dataset(dataset, data_root, split)
    return GenerationJob(local, generator, out_dir, labels=labels, device=device, **inputs)


def _local_dataset(dataset: str | None, data_root: Path | None, split: str | None):
    """The split to generate for (the embedded sample when no data root is given)."""
    from wsssbed.datasets import get_dataset
    from wsssbed.datasets.local import LocalDataset
    from wsssbed.embedded.sample import default_to_sample

    dataset, data_root, split = default_to_sample(dataset, data_root, split)
    spec = get_dataset(dataset)
    return LocalDataset(spec, data_root, split or spec.default_split)


def _run_generation(
    job, backend: str, address: str | None, workers: int, what: str, files: str
) -> None:
    """Check everything, generate with a progress bar (in this process, in `workers`
    processes, or on Ray), seal the folder."""
    from wsssbed.generators.writer import finish, generate, generate_parallel, start

    if backend not in BACKENDS:
        raise WsssbedError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if workers < 0 or (workers and backend == "ray"):
        raise WsssbedError("--workers takes a count >= 0, for --backend local")
    start(job)
    kept_on_interrupt(
        f"the files already written in {job.out} are whole and stay; the same command "
        "skips them and writes the rest"
    )
    local = job.dataset
    with progress_bar(f"{what} {local.spec.name}/{local.split}") as update:
        if backend == "ray":
            from wsssbed.distributed import generate_ray

            written, skipped = generate_ray(job, address, update)
        elif workers:
            written, skipped = generate_parallel(job, workers, update)
        else:
            written, skipped = generate(job, local.ids, update)
    record = finish(job)
    out.print(
        f"{written:,} written, {skipped:,} already there; {record['files']:,} {files} in "
        f"{job.out} ({record['digest']})",
        soft_wrap=True,
    )
