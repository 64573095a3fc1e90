"""HTTP Range parsing (api/ranges.py): which bytes of a video a player asked for, and a 416
with the file's size for a range outside it. The endpoint serving them is tested in test_api.py."""

from __future__ import annotations

import pytest

from api.ranges import RangeNotSatisfiable, parse_range
from core.errors import CattleCounterError

SIZE = 1000


@pytest.mark.parametrize(
    "header, expected",
    [
        ("bytes=0-0", (0, 0)),  # the probe browsers send before playing
        ("bytes=0-", (0, 999)),  # open-ended: to the end
        ("bytes=100-199", (100, 199)),
        ("bytes=900-5000", (900, 999)),  # a last position past the end is clipped, not refused
        ("bytes=999-", (999, 999)),
        ("bytes=-100", (900, 999)),  # suffix: the last 100 bytes
        ("bytes=-5000", (0, 999)),  # a suffix longer than the file is the whole file
        ("bytes= 5-9", (5, 9)),
    ],
)
def test_a_single_byte_range_gives_inclusive_positions_within_the_file(header: str, expected) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "items=0-10",  # not bytes
        "bytes=0-10,20-30",  # multi-range: the RFC allows answering with the whole file
        "bytes=abc-10",  # malformed: ignored, as the RFC asks
        "bytes=10-x",
        "bytes=",
    ],
)
def test_what_is_not_one_byte_range_means_the_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    "header, words",
    [
        ("bytes=1000-", "outside the file of 1000 bytes"),  # starts just past the end
        ("bytes=5000-6000", "outside the file"),
        ("bytes=20-10", "outside the file"),  # last before first
        ("bytes=-0", "asks for no bytes"),
    ],
)
def test_an_unsatisfiable_range_is_a_416_that_states_the_size(header: str, words: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, SIZE)
    error = caught.value
    assert isinstance(error, CattleCounterError)  # so the API's error handler answers it
    assert (error.http_status, error.code) == (416, "range_not_satisfiable")
    assert words in str(error) and header in str(error)
    assert error.headers == {"Content-Range": "bytes */1000"}  # RFC 9110: lets the client retry


def test_an_empty_file_has_no_satisfiable_range() -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range("bytes=0-", 0)
    assert caught.value.headers == {"Content-Range": "bytes */0"}
    assert parse_range(None, 0) is None
