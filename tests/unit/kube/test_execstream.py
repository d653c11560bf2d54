"""The exec stream read straight off its socket, SPDY/3.1 and websocket: frames cut
anywhere, fragmented messages, control frames, faults; and KubeClient.exec end to end
against a local server that speaks both like the API server (and refuses SPDY on demand)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import zlib
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from cellship.kube import execstream
from cellship.kube.client import KubeClient
from cellship.kube.errors import KubernetesError, KubernetesForbidden, KubernetesUnreachable
from cellship.kube.execstream import DICTIONARY, FrameError, Frames, SpdyFrames


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, n])
    elif n < 1 << 16:
        head = bytes([first, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + n.to_bytes(8, "big")
    return head + payload


def message(channel: int, data: bytes) -> bytes:
    return frame(0x2, bytes([channel]) + data)


SUCCESS = message(3, b'{"metadata":{},"status":"Success"}')


def served(wire: bytes, piece: int | None = None,
           written: bytearray | None = None) -> tuple[socket.socket, threading.Thread]:
    """The reading end of a socket pair whose other end writes ``wire`` (in pieces of
    ``piece`` bytes, or at once), shuts its writing down, and keeps what the reader
    writes back in ``written`` until the reader closes."""
    ours, theirs = socket.socketpair()

    def write() -> None:
        with theirs:
            try:
                if piece is None:
                    theirs.sendall(wire)
                else:
                    for at in range(0, len(wire), piece):
                        theirs.sendall(wire[at:at + piece])
                theirs.shutdown(socket.SHUT_WR)
                while chunk := theirs.recv(4096):
                    if written is not None:
                        written.extend(chunk)
            except OSError:
                pass  # the reader was done before the end of the bytes

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return ours, writer


def collect(wire: bytes, piece: int | None = None,
            pong: Callable[[bytes], None] = lambda _p: None) -> tuple[dict[int, bytes], bool]:
    sock, writer = served(wire, piece)
    got: dict[int, bytearray] = {}
    frames = Frames(sock, timeout=10, pong=pong)
    with sock:
        for channel, data in frames:
            assert isinstance(data, bytes) and data
            got.setdefault(channel, bytearray()).extend(data)
    writer.join()
    return {k: bytes(v) for k, v in got.items()}, frames.closed


@pytest.mark.parametrize("piece", [None, 1, 7, 4096])
def test_channels_come_apart_however_the_bytes_are_cut(piece) -> None:
    out = os.urandom(70_000)  # a 64-bit length; then 16-bit and 7-bit ones
    wire = (message(1, out[:50_000]) + message(2, b"warning\n") + message(1, out[50_000:])
            + message(1, b"") + message(1, b"x" * 200) + SUCCESS + frame(0x8, b"\x03\xe8"))
    got, closed = collect(wire, piece)
    assert got[1] == out + b"x" * 200
    assert got[2] == b"warning\n"
    assert json.loads(got[3])["status"] == "Success"
    assert closed


def test_a_fragmented_message_keeps_its_channel_and_pings_are_answered() -> None:
    pongs: list[bytes] = []
    wire = (frame(0x2, b"\x01abc", fin=False) + frame(0x9, b"hi") + frame(0x0, b"def", fin=False)
            + frame(0x0, b"ghi") + frame(0xA, b"") + message(2, b"e") + frame(0x8, b""))
    got, closed = collect(wire, 3, pong=pongs.append)
    assert got == {1: b"abcdefghi", 2: b"e"} and closed and pongs == [b"hi"]


def test_a_frame_larger_than_the_buffer_streams_through(monkeypatch) -> None:
    monkeypatch.setattr(execstream, "BUFFER", 4096)
    monkeypatch.setattr(execstream, "READ", 1000)
    out = os.urandom(100_000)
    got, closed = collect(message(1, out) + SUCCESS + frame(0x8, b""))
    assert got[1] == out and closed


def test_the_end_of_the_bytes_without_a_close_frame_ends_the_stream() -> None:
    got, closed = collect(message(1, b"partial"))
    assert got == {1: b"partial"} and not closed


@pytest.mark.parametrize("wire, words", [
    (bytes([0x82, 0x83, 1, 2, 3, 4]) + b"abc", "masked"),
    (bytes([0xC2, 1, 1]), "reserved"),
    (bytes([0x83, 1, 1]), "opcode 3"),
])
def test_what_no_server_sends_is_a_frame_error(wire, words) -> None:
    with pytest.raises(FrameError, match=words):
        collect(wire)


def test_silence_is_a_timeout() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(message(1, b"first"))
        frames = iter(Frames(ours, timeout=0.2))
        assert next(frames) == (1, b"first")
        with pytest.raises(TimeoutError):
            next(frames)


# -- SPDY/3.1 ------------------------------------------------------------------------------
def control(kind: int, payload: bytes, flags: int = 0) -> bytes:
    return ((0x8003 << 16) | kind).to_bytes(4, "big") + \
        ((flags << 24) | len(payload)).to_bytes(4, "big") + payload


def data(stream: int, payload: bytes, fin: bool = False) -> bytes:
    return stream.to_bytes(4, "big") + ((int(fin) << 24) | len(payload)).to_bytes(4, "big") \
        + payload


def spdy_end(status: bytes = b'{"metadata":{},"status":"Success"}') -> bytes:
    """How the kubelet ends an exec: stdout and stderr FIN, the Status on the error
    stream, that stream reset (CANCEL), GOAWAY."""
    return (data(3, b"", fin=True) + data(5, b"", fin=True) + data(1, status)
            + control(3, (1).to_bytes(4, "big") + (5).to_bytes(4, "big"))
            + control(7, bytes(8)))


def spdy_collect(wire: bytes, piece: int | None = None, leading: bytes = b""
                 ) -> tuple[dict[int, bytes], bool, bytes]:
    """What SpdyFrames makes of ``wire``, and what it wrote back (ping answers)."""
    written = bytearray()
    sock, writer = served(wire, piece, written)
    got: dict[int, bytearray] = {}
    frames = SpdyFrames(sock, timeout=10, leading=leading)
    with sock:
        for channel, chunk in frames:
            got.setdefault(channel, bytearray()).extend(chunk)
    writer.join()
    return {k: bytes(v) for k, v in got.items()}, frames.closed, bytes(written)


def test_the_spdy_dictionary_is_the_protocols() -> None:
    assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2


@pytest.mark.parametrize("piece", [None, 1, 5, 4096])
def test_spdy_streams_come_apart_however_the_bytes_are_cut(piece) -> None:
    out = os.urandom(100_000)
    wire = (control(2, (1).to_bytes(4, "big") + b"\x78\x9c")  # SYN_REPLY: not decoded
            + control(4, bytes(4)) + data(3, out[:60_000]) + data(5, b"careful\n")
            + control(9, (3).to_bytes(4, "big") + (1000).to_bytes(4, "big"))
            + data(7, b"not ours") + data(3, out[60_000:]) + spdy_end())
    got, closed, _ = spdy_collect(wire, piece)
    assert got[1] == out and got[2] == b"careful\n"
    assert json.loads(got[3])["status"] == "Success" and closed


def test_spdy_bytes_that_came_with_the_upgrade_are_read_first_and_pings_answered() -> None:
    ping = control(6, (7).to_bytes(4, "big"))
    got, closed, written = spdy_collect(ping + data(3, b"there") + spdy_end(),
                                        leading=data(3, b"hello "))
    assert got[1] == b"hello there" and closed
    assert written == ping  # a ping comes back as it came


def test_spdy_ends_when_every_stream_has_even_without_goaway() -> None:
    wire = data(3, b"x", fin=True) + data(5, b"", fin=True) + data(1, b"{}", fin=True)
    got, closed, _ = spdy_collect(wire + b"garbage that is never read")
    assert got == {1: b"x", 3: b"{}"} and closed


@pytest.mark.parametrize("wire, words", [
    (control(3, (3).to_bytes(4, "big") + (6).to_bytes(4, "big")), "reset the exec's stream 3"),
    (((0x8002 << 16) | 2).to_bytes(4, "big") + bytes(4), "version 2"),
])
def test_what_no_spdy_server_sends_for_an_exec_is_a_frame_error(wire, words) -> None:
    with pytest.raises(FrameError, match=words):
        spdy_collect(wire)


def test_spdy_that_just_stops_ends_without_closed() -> None:
    got, closed, _ = spdy_collect(data(3, b"partial"))
    assert got == {1: b"partial"} and not closed



# -- KubeClient.exec against a local "API server" ------------------------------------------
Script = Callable[[list[str]], "list[tuple[int, bytes]] | str"]
CHANNEL_STREAM = {1: 3, 2: 5, 3: 1}  # websocket channel -> the SPDY stream kubectl makes


class FakeExecServer:
    """Plain-HTTP exec endpoint. A SPDY upgrade is answered per ``spdy`` ("ok": 101 and
    SPDY frames, after checking the client's three SYN_STREAMs; "refuse": 400; "forbid":
    RBAC's 403; "bad": 400 to the websocket too), a websocket one with v4.channel.k8s.io. Then it sends what
    ``script(command)`` returns, ``[(channel, bytes), ...]``, ended as the kubelet ends
    it; "half": the first item only and no end; "silent": nothing for a while."""

    def __init__(self, script: Script, spdy: str = "ok") -> None:
        self.script = script
        self.spdy = spdy
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        self.streams: list[list[str]] = []  # the streamtype of each SYN_STREAM, per exec
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                try:
                    self._one(conn)
                except OSError:
                    pass

    def _one(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        head = request.decode()
        self.requests.append(head)
        command = parse_qs(urlsplit(head.split(" ", 2)[1]).query)["command"]
        script = self.script(command)
        if self.spdy == "bad":  # a bad request whatever the protocol (a container not there)
            body = json.dumps({"kind": "Status", "status": "Failure", "code": 400,
                               "message": "container x is not valid for pod pod-0"}).encode()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        if "upgrade: spdy/3.1" in head.lower():
            if self.spdy == "refuse":
                body = b"Upgrade request required"
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                return
            if self.spdy == "forbid":
                body = json.dumps({"kind": "Status", "status": "Failure", "code": 403,
                                   "reason": "Forbidden", "message": 'pods "pod-0" is '
                                   'forbidden: User "jane" cannot create resource '
                                   '"pods/exec" in API group "" in the namespace "ml"'}).encode()
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io"
                         b"\r\n\r\n")
            self.streams.append(self._syn_streams(conn))
            self._send(conn, script, spdy=True)
            return
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                   if line.lower().startswith("sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                      "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
        self._send(conn, script, spdy=False)

    def _syn_streams(self, conn: socket.socket) -> list[str]:
        """Read the client's three SYN_STREAMs; their streamtype headers, in order."""
        unpack = zlib.decompressobj(zdict=DICTIONARY)
        kinds, buffered = [], b""
        while len(kinds) < 3:
            while len(buffered) < 8 or len(buffered) < 8 + int.from_bytes(buffered[5:8], "big"):
                buffered += conn.recv(4096)
            length = int.from_bytes(buffered[5:8], "big")
            frame, buffered = buffered[:8 + length], buffered[8 + length:]
            assert frame[:4] == ((0x8003 << 16) | 1).to_bytes(4, "big")  # SYN_STREAM, v3
            assert frame[4] == 0x01  # FIN: the client sends nothing on them
            block = unpack.decompress(frame[18:])
            count, at, names = int.from_bytes(block[:4], "big"), 4, []
            for _ in range(count * 2):
                size = int.from_bytes(block[at:at + 4], "big")
                names.append(block[at + 4:at + 4 + size].decode())
                at += 4 + size
            assert names[0] == "streamtype"
            kinds.append(names[1])
        return kinds

    def _send(self, conn: socket.socket, script: "list[tuple[int, bytes]] | str",
              spdy: bool) -> None:
        if script == "silent":
            self.release.wait(5)
            return
        items = list(script) if not isinstance(script, str) else []
        if script == "half":
            items = [(1, b"half")]
        wire = b""
        for channel, payload in items:
            wire += data(CHANNEL_STREAM[channel], payload) if spdy else message(channel, payload)
        if script != "half":
            wire += (spdy_end(b"") if spdy else frame(0x8, b""))
        conn.sendall(wire)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.fixture
def exec_client(tmp_path: Path, monkeypatch) -> Iterator[Callable[..., tuple[KubeClient,
                                                                            FakeExecServer]]]:
    servers: list[FakeExecServer] = []

    def make(script: Script, spdy: str = "ok") -> tuple[KubeClient, FakeExecServer]:
        server = FakeExecServer(script, spdy)
        servers.append(server)
        config = tmp_path / f"kubeconfig-{server.port}"
        config.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake",
                          "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
            "users": [{"name": "u", "user": {"token": "secret-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u",
                                                      "namespace": "ml"}}]}))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        return KubeClient(kubeconfig=str(config)), server

    yield make
    for server in servers:
        server.close()


SUCCESS_STATUS = (3, b'{"metadata":{},"status":"Success"}')


@pytest.mark.parametrize("spdy", ["ok", "refuse"])
def test_exec_yields_stdout_and_checks_the_final_status(exec_client, spdy) -> None:
    out = os.urandom(300_000)
    client, server = exec_client(lambda _cmd: [(1, out[:32_768]), (2, b"note\n"),
                                               (1, out[32_768:]), SUCCESS_STATUS], spdy)
    for _ in range(2):
        got = b"".join(client.exec("ml", "pod-0", ["python3", "sender.py", "list", "/x y"],
                                   container="keeper"))
        assert got == out
    first = server.requests[0]
    assert "authorization: bearer secret-token" in first.lower()
    assert "container=keeper" in first and "command=%2Fx+y" in first
    upgrades = [r.lower().split("upgrade: ")[1].split()[0] for r in server.requests]
    if spdy == "ok":
        assert first.startswith("POST ") and upgrades == ["spdy/3.1"] * 2
        assert server.streams == [["error", "stdout", "stderr"]] * 2
    else:  # refused once: the websocket, and straight away the next time
        assert upgrades == ["spdy/3.1", "websocket", "websocket"]


@pytest.mark.parametrize("spdy", ["ok", "refuse"])
def test_exec_of_a_failing_command_says_what_it_printed(exec_client, spdy) -> None:
    failure = json.dumps({"status": "Failure", "message": "command terminated with non-zero "
                          "exit code: exit status 2", "reason": "NonZeroExitCode"}).encode()
    client, _ = exec_client(lambda _cmd: [(2, b"usage: sender.py\n"), (3, failure)], spdy)
    with pytest.raises(KubernetesError) as caught:
        list(client.exec("ml", "pod-0", ["python3", "sender.py"]))
    assert not isinstance(caught.value, KubernetesUnreachable)
    assert "exit status 2" in str(caught.value) and "usage: sender.py" in str(caught.value)


@pytest.mark.parametrize("spdy", ["ok", "refuse"])
def test_exec_that_ends_before_the_command_did_can_be_retried(exec_client, spdy) -> None:
    client, _ = exec_client(lambda _cmd: "half", spdy)
    with pytest.raises(KubernetesUnreachable, match="ended before its command did"):
        list(client.exec("ml", "pod-0", ["true"]))


@pytest.mark.parametrize("spdy", ["ok", "refuse"])
def test_exec_that_goes_silent_is_unreachable(exec_client, spdy) -> None:
    client, _ = exec_client(lambda _cmd: "silent", spdy)
    with pytest.raises(KubernetesUnreachable, match="silent"):
        list(client.exec("ml", "pod-0", ["sleep", "99"], timeout=0.3))


def test_exec_that_rbac_forbids_says_so_and_does_not_try_again(exec_client) -> None:
    client, server = exec_client(lambda _cmd: [SUCCESS_STATUS], "forbid")
    with pytest.raises(KubernetesForbidden) as caught:
        list(client.exec("ml", "pod-0", ["true"]))
    assert caught.value.resource == "pods/exec" and len(server.requests) == 1


def test_a_bad_request_to_both_protocols_is_the_servers_word_and_spdy_stays(exec_client) -> None:
    client, server = exec_client(lambda _cmd: [SUCCESS_STATUS], "bad")
    with pytest.raises(KubernetesError) as caught:
        list(client.exec("ml", "pod-0", ["true"], container="x"))
    assert caught.value.status == 400 and "not valid for pod" in str(caught.value)
    assert len(server.requests) == 2 and not client._spdy_refused  # SPDY was not the problem
