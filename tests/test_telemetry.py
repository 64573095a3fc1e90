"""DJI SRT telemetry: the variants between drone models, synthesised (no real sample can be
downloaded here), read to exact values; what cannot be used is said, never refused."""

from __future__ import annotations

import pytest

from ml_engine.media.telemetry import parse_srt, read_srt, srt_problem, telemetry_facts
from tests.fixtures_telemetry import EVERY_FIELD, dji_srt, other_makers_srt

MAVIC3E = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2024-03-02 10:15:20.120
[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [color_md: default] [focal_len: 24.00] [latitude: -33.861234] [longitude: 151.209876] [rel_alt: 80.000 abs_alt: 120.512] [gb_yaw: -90.3 gb_pitch: -89.9 gb_roll: 0.0] [ct: 5500] </font>

2
00:00:00,033 --> 00:00:00,066
<font size="28">FrameCnt: 2, DiffTime: 33ms
2024-03-02 10:15:20.153
[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [color_md: default] [focal_len: 24.00] [latitude: -33.861240] [longitude: 151.209880] [rel_alt: 80.100 abs_alt: 120.612] [gb_yaw: -90.3 gb_pitch: -89.9 gb_roll: 0.1] [ct: 5500] </font>
"""

MINI2 = """1
00:00:00,000 --> 00:00:01,000
F/2.8, SS 1000, ISO 100, EV 0, DZOOM 1.000, [latitude : 52.123450] [longtitude : 5.678900] [altitude: 45.2]

2
00:00:01,000 --> 00:00:02,000
F/2.8, SS 1000, ISO 100, EV 0, DZOOM 1.000, [latitude : 52.123460] [longtitude : 5.678950] [altitude: 45.4]
"""

PHANTOM4 = """1
00:00:00,000 --> 00:00:00,033
HOME(5.6789,52.1234) 2019.05.01 10:00:00
GPS(5.678912,52.123456,19) BAROMETER:61.3
ISO:100 Shutter:500 EV:0 Fnum:F2.8
"""


def test_a_mavic_3_enterprise_block_is_read_to_its_exact_values():
    telemetry = parse_srt(MAVIC3E)
    assert telemetry.problems == []
    first, second = telemetry.samples
    assert (first.time_s, first.frame, first.lat, first.lon) == (0.0, 1, -33.861234, 151.209876)
    assert (first.rel_alt, first.abs_alt, first.focal_mm) == (80.0, 120.512, 24.0)
    assert (first.yaw, first.pitch, first.roll) == (-90.3, -89.9, 0.0)
    assert (second.time_s, second.frame, second.roll) == (0.033, 2, 0.1)


def test_mini_2_spacing_and_spelling_and_a_phantom_4_gps_line_are_read():
    mini = parse_srt(MINI2)
    assert [(s.time_s, s.lat, s.lon, s.rel_alt) for s in mini.samples] == [
        (0.0, 52.12345, 5.6789, 45.2), (1.0, 52.12346, 5.67895, 45.4)]
    assert mini.problems == ["the telemetry never gives abs_alt, focal_mm, yaw, pitch, roll"]
    phantom = parse_srt(PHANTOM4)
    (sample,) = phantom.samples
    assert (sample.lat, sample.lon, sample.rel_alt) == (52.123456, 5.678912, 61.3)


def test_blocks_without_a_fix_are_left_out_and_counted():
    no_fix = MAVIC3E.replace("[latitude: -33.861240] [longitude: 151.209880]", "[latitude: 0.0] [longitude: 0.0]")
    telemetry = parse_srt(no_fix + "\n3\ngarbage without a time\n")
    assert [s.frame for s in telemetry.samples] == [1]
    assert telemetry.problems == ["2 of 3 telemetry blocks had no time or GPS position"]


@pytest.mark.parametrize(("text", "words"), [
    ("", "holds no subtitle blocks"),
    ("1\n00:00:00,000 --> 00:00:01,000\nspeed: 4 m/s\n", "none of the telemetry's 1 blocks has both a time and a GPS"),
])
def test_a_file_with_nothing_usable_says_so_and_does_not_raise(text, words):
    telemetry = parse_srt(text)
    assert telemetry.samples == []
    assert any(words in p for p in telemetry.problems)


def test_a_record_count_that_does_not_match_the_video_is_matched_by_time_and_reported():
    telemetry = parse_srt(MINI2)  # 2 records, 1 s apart
    telemetry.check_against_video(frames=150, fps=30.0)  # a 5 s video
    assert telemetry.problems[1:] == [
        "the telemetry has 2 records for 150 video frames: records are matched to frames by time",
        "the telemetry ends at 1.0 s of a 5.0 s video: later frames use its last record",
    ]
    assert telemetry.at(0.4).lon == 5.6789
    assert telemetry.at(0.6).lon == 5.67895
    assert telemetry.at(4.9).lon == 5.67895


# --- a file's bytes: the API's check of its shape, the worker's reading, stats.json's report ----


@pytest.mark.parametrize(("head", "words"), [
    (b"", "the file is empty"),
    (b"\x00\x01\x02PK\x03\x04 binary", "not a text file"),
    (b"\xff\xd8\xff\xe0 a JPEG", "not a text file"),
    (b"latitude: 52.1, longitude: 5.6\n", "no timing line"),
    ("1\n00:00:01,000 --> 00:00:02,000\n".encode("utf-16-le"), "not a text file"),  # UTF-16 without its mark
])
def test_a_file_that_is_not_shaped_like_a_subtitle_file_is_named_so(head, words):
    assert words in srt_problem(head)


@pytest.mark.parametrize("head", [
    MAVIC3E.encode(),
    b"\xef\xbb\xbf" + MINI2.encode(),  # UTF-8 with a byte-order mark
    b"\xff\xfe" + PHANTOM4.encode("utf-16-le"),  # UTF-16 with its mark
    ("1\n00:00:00,000 --> 00:00:00,033\n[location: Zü").encode()[:-1],  # a head cut inside a character
])
def test_subtitle_files_in_each_encoding_pass_the_check(head):
    assert srt_problem(head) is None


def test_a_whole_file_is_read_from_its_bytes_and_keeps_its_name():
    telemetry = read_srt(b"\xef\xbb\xbf" + MAVIC3E.encode(), source="DJI_0001.SRT")
    assert [s.frame for s in telemetry.samples] == [1, 2] and telemetry.source == "DJI_0001.SRT"
    binary = read_srt(bytes(range(256)) * 4, source="x.srt")
    assert binary.samples == [] and binary.problems == ["the telemetry file is not text: nothing in it could be read"]


def test_stats_say_what_was_given_read_and_left_out():
    assert telemetry_facts(None) == {"given": False}
    full = read_srt(dji_srt(frames=20, fps=10.0).encode(), source="DJI_0001.SRT")
    assert telemetry_facts(full) == {
        "given": True, "file": "DJI_0001.SRT", "samples": 20, "usable": True, "span_s": [0.0, 1.9],
        "fields": EVERY_FIELD, "problems": [],
    }
    mini = telemetry_facts(parse_srt(MINI2))
    assert mini["fields"] == ["gps", "relative_altitude"]
    assert mini["problems"] == ["the telemetry never gives abs_alt, focal_mm, yaw, pitch, roll"]
    other = telemetry_facts(read_srt(other_makers_srt(5).encode()))
    assert (other["samples"], other["usable"], other["span_s"], other["fields"]) == (0, False, None, [])
    assert "the format is not one this reader knows" in other["problems"][0]


def test_the_synthesised_dji_file_is_one_record_per_frame():
    telemetry = parse_srt(dji_srt(frames=20, fps=10.0))
    telemetry.check_against_video(frames=20, fps=10.0)
    assert telemetry.problems == []
    assert [s.frame for s in telemetry.samples] == list(range(1, 21))
    assert telemetry.at(1.0).lat == pytest.approx(-33.861234 + 11e-5)
