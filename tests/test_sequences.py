"""The frame-sequence rule shared by ``vidsync ls`` and the web UI's tree."""

from __future__ import annotations

from vidsync.sequences import Sequence, group, parse_frame_name


def test_a_frame_name_is_digits_before_an_image_extension() -> None:
    f = parse_frame_name("sh010_comp.0014400.exr")
    assert f is not None and (f.prefix, f.digits, f.suffix, f.frame) == (
        "sh010_comp.", "0014400", ".exr", 14400)
    assert parse_frame_name("A001_C004.mov") is None  # a clip, not a frame
    assert parse_frame_name("notes.txt") is None and parse_frame_name("exr") is None
    assert parse_frame_name("PLATE_0001.DPX") is not None  # any case


def test_group_keeps_order_and_makes_one_line_per_sequence() -> None:
    paths = ["a/readme.txt", *[f"a/sh010_comp.{i:07d}.exr" for i in range(1, 14401)],
             "a/x.001.png", "a/x.002.png", "b/sh010_comp.0000001.exr",
             "a/v.1.jpg", "a/v.01.jpg", "a/v.2.jpg"]
    out = group(paths, lambda p: p)
    seq = out[1]
    assert isinstance(seq, Sequence)
    assert seq.path == "a/sh010_comp.[0000001-0014400].exr" and len(seq.frames) == 14400
    assert seq.missing == 0
    # Under three frames, or another folder or width: separate lines, in their order.
    assert out[0] == "a/readme.txt" and out[2:] == [
        "a/x.001.png", "a/x.002.png", "b/sh010_comp.0000001.exr", "a/v.1.jpg", "a/v.2.jpg",
        "a/v.01.jpg"]


def test_gaps_are_counted() -> None:
    (seq,) = group([f"f.{i:04d}.tif" for i in (1, 2, 5, 10)], lambda p: p)
    assert isinstance(seq, Sequence)
    assert (seq.name, seq.missing, seq.folder) == ("f.[0001-0010].tif", 6, "")
