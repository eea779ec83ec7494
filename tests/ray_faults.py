"""A dataset that kills the Ray worker reading it, once: how the tests lose a worker for
real. Shipped to workers by value (`ray.cloudpickle.register_pickle_by_value`)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from wsssbed.datasets.local import LocalDataset


@dataclass
class KillOnce(LocalDataset):
    """The split, except that the first process to read its `after`-th mask while no
    `marker` file exists writes its pid there and SIGKILLs itself."""

    marker: str = ""
    after: int = 3

    def read_gt(self, image_id: str):
        self.__dict__["_reads"] = self.__dict__.get("_reads", 0) + 1
        if self.__dict__["_reads"] == self.after and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().read_gt(image_id)


def killing(dataset: LocalDataset, marker: Path) -> KillOnce:
    """`dataset` as a `KillOnce` with `marker`."""
    import ray
    import ray_faults

    ray.cloudpickle.register_pickle_by_value(ray_faults)
    return KillOnce(dataset.spec, dataset.data_root, dataset.split, str(marker))
