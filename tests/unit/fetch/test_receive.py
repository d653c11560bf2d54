"""The receiving end of the sender's stream, byte by byte: the check the sender names
(CRC-32, or SHA-256 from a sender that names none), the size, and a stream cut anywhere."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from pathlib import Path

import pytest

from cellship.fetch.receive import Mismatch, StreamBroken, receive
from cellship.inside import sender


def stream(path: str, data: bytes, digest: str, check: str | None = "crc32",
           end: int | None = None, offset: int = 0) -> bytes:
    header = {"path": path, "offset": offset, "size": len(data)}
    if check is not None:
        header["check"] = check
    body = data[offset:]
    return (b"F " + json.dumps(header).encode() + b"\n" + b"C %d\n" % len(body) + body
            + b"H %s %d\n" % (digest.encode(), len(data) if end is None else end) + b"E\n")


def crc(data: bytes) -> str:
    return "%08x" % zlib.crc32(data)


def cut(wire: bytes, size: int) -> list[bytes]:
    return [wire[i:i + size] for i in range(0, len(wire), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 1000, 1 << 20])
def test_a_file_arrives_whole_however_the_stream_is_cut(tmp_path: Path, size: int) -> None:
    data = os.urandom(5000)
    target = tmp_path / "staged"
    done: list[str] = []
    got = receive(iter(cut(stream("/pod/a", data, crc(data)), size)), {"/pod/a": target},
                  on_done=lambda remote, _path: done.append(remote))
    assert got.outcome == {"/pod/a": "done"} and done == ["/pod/a"]
    assert target.read_bytes() == data


def test_a_sender_that_names_no_check_sent_sha256(tmp_path: Path) -> None:
    data = os.urandom(3000)
    good = stream("/pod/a", data, hashlib.sha256(data).hexdigest(), check=None)
    receive(iter([good]), {"/pod/a": tmp_path / "a"})
    assert (tmp_path / "a").read_bytes() == data
    with pytest.raises(Mismatch, match="SHA-256"):  # a CRC where SHA-256 is due: caught
        receive(iter([stream("/pod/a", data, crc(data), check=None)]), {"/pod/a": tmp_path / "b"})


@pytest.mark.parametrize("digest, end", [("00000000", None), (None, 2999)])
def test_a_wrong_crc_or_size_is_a_mismatch(tmp_path: Path, digest, end) -> None:
    data = os.urandom(3000)
    wire = stream("/pod/a", data, digest or crc(data), end=end)
    with pytest.raises(Mismatch, match="CRC-32 or size") as caught:
        receive(iter([wire]), {"/pod/a": tmp_path / "a"})
    assert caught.value.remote == "/pod/a"


def test_a_resumed_file_is_checked_whole_with_the_prefix_from_disk(tmp_path: Path) -> None:
    data = os.urandom(4000)
    target = tmp_path / "a"
    target.write_bytes(data[:1500])
    receive(iter([stream("/pod/a", data, crc(data), offset=1500)]), {"/pod/a": target})
    assert target.read_bytes() == data
    target.write_bytes(b"x" * 1500)  # a stale prefix: the whole-file check catches it
    with pytest.raises(Mismatch):
        receive(iter([stream("/pod/a", data, crc(data), offset=1500)]), {"/pod/a": target})


def test_a_check_this_cellship_does_not_know_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StreamBroken, match="blake3"):
        receive(iter([stream("/pod/a", b"abc", "x", check="blake3")]), {"/pod/a": tmp_path / "a"})
    assert not (tmp_path / "a").exists()


def test_a_header_line_without_an_end_is_garbled_not_held(tmp_path: Path) -> None:
    with pytest.raises(StreamBroken, match="garbled"):
        receive(iter([b"F " + b"x" * 40_000] * 3), {})


@pytest.mark.parametrize("asked, named", [([], "sha256"), (["crc32"], "crc32"),
                                          (["sha256"], "sha256"), (["nonsense"], "sha256")])
def test_the_sender_sends_the_check_asked_for_and_names_it(tmp_path: Path, monkeypatch,
                                                           asked, named) -> None:
    path = tmp_path / "f"
    data = os.urandom(sender.CHUNK + 10)  # two chunks
    path.write_bytes(data)
    out = io.BytesIO()
    monkeypatch.setattr(sender.sys, "stdout", io.TextIOWrapper(out))
    assert sender.main(["send", json.dumps([[str(path), 0]]), *asked]) == 0
    wire = out.getvalue()
    assert json.loads(wire.split(b"\n", 1)[0][2:])["check"] == named
    digest = crc(data) if named == "crc32" else hashlib.sha256(data).hexdigest()
    assert wire.endswith(b"H %s %d\nE\n" % (digest.encode(), len(data)))
    receive(iter([wire]), {str(path): tmp_path / "copy"})
    assert (tmp_path / "copy").read_bytes() == data
