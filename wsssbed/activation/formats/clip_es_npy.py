"""`clip-es-npy`: what CLIP-ES's `generate_cams_voc12.py` / `_coco14.py` save.

`np.save(..., {"keys": keys.numpy(), "attn_highres":
refined_cam_all_scales.cpu().numpy().astype(np.float16)})` (linyq2117/CLIP-ES
generate_cams_voc12.py:209-214, generate_cams_coco14.py:198-202): `keys` numpy int64,
0-based, in the order the classes first appear in the image's annotation (not sorted),
`attn_highres` float16 (K, H, W). The maps are read as float32: exactly the float16
values.
"""

from __future__ import annotations

import numpy as np

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.pickled import PickledNpy


@FORMATS.register("clip-es-npy")
class ClipEsNpy(PickledNpy):
    name = "clip-es-npy"
    map_keys = ("attn_highres",)
    description = "`keys` and float16 `attn_highres`, as CLIP-ES saves"

    def content(self, keys: np.ndarray, cams: np.ndarray) -> dict:
        return {"keys": keys, "attn_highres": cams.astype(np.float16)}
