"""The .vgc header and records: round trip, and one clear line for every kind of bad file."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from fractions import Fraction

import pytest

from vidgen_core.codec.bitstream import (
    MAGIC, BitstreamError, Header, check_end, pack_header, read_header, read_record, write_record,
)

H = Header("vidgen-vae", 3, b"\x01\x02\x03\x04\x05\x06\x07\x08", 300, Fraction(30000, 1001), 144, 175, 0, 1, 8, 5, 0.354)


def test_header_round_trip_is_exact() -> None:
    raw = pack_header(H)
    assert raw.startswith(MAGIC)
    f = io.BytesIO(raw + b"rest")
    assert read_header(f) == H
    assert f.read() == b"rest"
    assert H.model_uri == "models:/vidgen-vae/3"
    assert (H.num_windows, H.num_records) == (38, 5)


def _forge(name: bytes, **fixed_overrides) -> bytes:
    """A header whose CRC is right but whose fields are not: parsing must still refuse it."""
    values = dict(version=3, digest=b"\0" * 8, frames=10, num=12, den=1, h=32, w=32, ph=0, pw=0, window=8, q=1, step=0.5)
    values.update(fixed_overrides)
    body = MAGIC + bytes([1, len(name)]) + name + struct.pack("<I8sIIIHHBBHBf", *values.values())
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"RIFF\x00\x00\x00\x00WAVE", "not a vidgen .vgc file"),
        (b"", "not a vidgen .vgc file"),
        (MAGIC + b"\x07\x00", "format version 7 is not supported"),
        (pack_header(H)[:20], "truncated .vgc file"),
        (pack_header(H)[:-1] + b"\x00", "header checksum does not match"),
        (_forge(b"../../etc/passwd"), "bad model name"),
        (_forge(b"a/b"), "bad model name"),
        (_forge(b"x..y"), "no '..'"),
        (_forge(b"caf\xc3\xa9"), "not ASCII"),
        (_forge(b"vidgen-vae", frames=0), "bad frame count 0"),
        (_forge(b"vidgen-vae", den=0), "denominator 0"),
        (_forge(b"vidgen-vae", h=0), "bad size"),
        (_forge(b"vidgen-vae", window=0), "bad window"),
        (_forge(b"vidgen-vae", step=float("nan")), "bad quantisation step"),
    ],
)
def test_bad_headers_are_one_line_errors(raw: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message) as exc:
        read_header(io.BytesIO(raw))
    assert "\n" not in str(exc.value)


def test_header_values_are_checked_when_writing_too() -> None:
    with pytest.raises(BitstreamError, match="bad model name"):
        dataclasses.replace(H, model_name="../x")
    with pytest.raises(BitstreamError, match="bad size"):
        dataclasses.replace(H, width=0)


def test_records_round_trip_and_truncation() -> None:
    f = io.BytesIO()
    payloads = [b"", b"x" * 5, b"y" * 300, b"z" * 70000]  # 1-, 2- and 3-byte varint lengths
    for p in payloads:
        write_record(f, p)
    f.seek(0)
    assert [read_record(f) for _ in payloads] == payloads
    check_end(f)
    data = f.getvalue()
    with pytest.raises(BitstreamError, match="truncated"):
        g = io.BytesIO(data[:-10])
        for _ in payloads:
            read_record(g)
    g = io.BytesIO(data + b"!")
    for _ in payloads:
        read_record(g)
    with pytest.raises(BitstreamError, match="unexpected bytes after the last record"):
        check_end(g)
