"""Generators behind `wsssbed pseudo-labels`, `clip-activations` and `saliency`: the
interface and the classic rules at one grid point (`base`), SAM refinement
(`sam_refine`), box-prompted SAM (`sam_box`, `grounded`), CLIP Grad-CAM activation maps
(`clip_cam`), SAM x CLIP saliency (`sam_clip`), dense CRF (`crf`) and the resumable
writer (`writer`)."""
