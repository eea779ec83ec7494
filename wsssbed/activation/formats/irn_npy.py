"""`irn-npy`: what IRN's `step/make_cam.py` saves, and its forks.

`np.save(path, {"keys": valid_cat, "cam": strided_cam.cpu(), "high_res":
highres_cam.cpu().numpy()})` (jiwoon-ahn/irn step/make_cam.py:55-56): `keys` a torch
int64 tensor of 0-based foreground class indices (K,), `cam` a torch float32 tensor at
stride 4 (K, ceil(H/4), ceil(W/4)), `high_res` numpy float32 (K, H, W). Forks save the
same keys with numpy everywhere, or only `cam` at full size. The maps are `high_res`
when present (the low-resolution `cam` is then never copied), else `cam`.
"""

from __future__ import annotations

from wsssbed.activation.base import FORMATS
from wsssbed.activation.formats.pickled import PickledNpy


@FORMATS.register("irn-npy")
class IrnNpy(PickledNpy):
    name = "irn-npy"
    map_keys = ("high_res", "cam")
    description = "`keys` and `high_res` or `cam`, as IRN saves"
