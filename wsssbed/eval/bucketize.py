"""Exact bucketing of float32 values against sorted float32 thresholds.

`count_below(v)` = #{j : t_j < v} (or <= with `inclusive`) for every value. On CUDA it is
`torch.searchsorted`. On the CPU a binary search per pixel is slow (about 60 ns per value
here), so values are mapped to cells by `floor((v - t_0) * scale)` in float32. That map is
monotone in v, so a value in a cell below threshold j's own cell is below t_j, and a value
in a cell above it is above t_j; only a value sharing threshold j's cell needs one exact
comparison. With at most one threshold per cell (the cell count grows until that holds)
a count is a table lookup, a second lookup and one comparison: the same integers as a
binary search.
"""

from __future__ import annotations

import torch

MAX_CELLS_PER_THRESHOLD = 64


class Bucketizer:
    """Counts thresholds below values; build once per sorted threshold list.

    Args:
        thresholds: (T,) float32, sorted ascending.
    """

    def __init__(self, thresholds: torch.Tensor) -> None:
        self.thresholds = thresholds.to(torch.float32).contiguous()
        count = self.thresholds.numel()
        self.low = self.thresholds[0]
        span = float(self.thresholds[-1]) - float(self.low)
        self.table = None
        cells_per_threshold = 8
        while span > 0 and cells_per_threshold <= MAX_CELLS_PER_THRESHOLD:
            self.cells = cells_per_threshold * count
            self.scale = torch.tensor(self.cells / span, dtype=torch.float32)
            cell = self._cells(self.thresholds)
            if torch.unique(cell).numel() == count:  # one threshold per cell at most
                self.table = self._tables(cell, count)
                break
            cells_per_threshold *= 2

    def _cells(self, values: torch.Tensor) -> torch.Tensor:
        """Cell index in [0, cells + 1] (0: below t_0), computed in float32."""
        position = (values - self.low.to(values.device)) * self.scale.to(values.device)
        return position.clamp_(-1, self.cells).add_(1).to(torch.int32)  # >= 0: trunc = floor

    def _tables(self, cell: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        below = torch.zeros(self.cells + 3, dtype=torch.int32)
        below.index_add_(0, cell + 1, torch.ones(count, dtype=torch.int32))
        below = below.cumsum(0, dtype=torch.int32)[:-1]  # thresholds in lower cells
        inside = torch.full((self.cells + 2,), float("nan"))  # NaN compares false
        inside[cell.long()] = self.thresholds
        return below, inside

    def count_below(self, values: torch.Tensor, *, inclusive: bool = False) -> torch.Tensor:
        """(same shape as values) int32 counts of thresholds < value (<= if inclusive)."""
        if self.thresholds.numel() == 1:
            t = self.thresholds.to(values.device)
            return (t <= values if inclusive else t < values).to(torch.int32)
        if values.device.type != "cpu" or self.table is None:
            thresholds = self.thresholds.to(values.device)
            return torch.searchsorted(
                thresholds, values.contiguous(), right=inclusive, out_int32=True
            )
        below, inside = self.table
        flat = values.reshape(-1)
        cell = self._cells(flat)
        threshold = inside.index_select(0, cell)
        passed = threshold <= flat if inclusive else threshold < flat
        return (below.index_select(0, cell) + passed).view(values.shape)
