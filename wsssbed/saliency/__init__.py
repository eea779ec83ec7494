"""Saliency sources: precomputed saliency maps (salient-object detectors' 8-bit PNGs,
as WSSS-BED stores them) read and written through `maps`. The training-free SAM x CLIP
saliency generator lives with the generators (`wsssbed.generators.sam_clip`)."""
