"""Grid parsing."""

import pytest

from wsssbed.errors import InputError
from wsssbed.grids import parse_grid


def test_range_includes_stop_and_is_decimal_exact():
    grid = parse_grid("0:0.6:0.01")
    assert len(grid) == 61 and grid[0] == 0.0 and grid[-1] == 0.6 and grid[7] == 0.07


def test_comma_list_keeps_order():
    assert parse_grid("0.3, 0.1,0.25") == [0.3, 0.1, 0.25]


@pytest.mark.parametrize("text", ["", "0:1", "1:0:0.1", "0:1:0", "a,b", "0.1,0.1", "nan"])
def test_bad_grids_are_refused(text):
    with pytest.raises(InputError):
        parse_grid(text)
