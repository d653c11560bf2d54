"""The exec subresource's stream, read straight off its socket, over SPDY/3.1 or a websocket.

An exec's bytes go pod -> containerd (or another runtime's streaming server) -> kubelet ->
API server -> here, and the runtime frames them in the protocol the client asked for:

* SPDY/3.1 (what ``kubectl exec`` and ``kubectl cp`` speak to any API server before 1.30,
  and still fall back to): one SPDY stream per channel (error, stdout, stderr), 8-byte
  frame headers. :func:`open_spdy` makes the upgrade itself and :class:`SpdyFrames` reads it.
* The websocket channel protocol (``v4.channel.k8s.io``/``v5``: binary messages whose first
  byte is the channel, 1 stdout, 2 stderr, 3 the final Status), opened by websocket-client
  (TLS, token, proxy) and read by :class:`Frames`.

Why SPDY first: on the same cluster (Kubernetes 1.20, containerd) the runtime, kubelet and
API server spent 0.5-1 CPU-second more per 500 MB relaying a websocket exec than a SPDY
one (measured beside ``kubectl exec ... cat``; benchmarks/README.md, the k8s_fetch row),
and a copy home is CPU-bound. A server that refuses the SPDY upgrade (an API server that
no longer offers it, a proxy in front of it) gets the websocket instead
(:meth:`cellship.kube.client.KubeClient.exec`). Written here because no maintained
Python SPDY/3.1 client exists (the official kubernetes client speaks websocket only).

Why not websocket-client's own frame reader: it reads 16 kB per ``recv`` and makes a lock,
an ABNF object and a join per frame. Both readers here drain whatever the socket holds into
one buffer (non-blocking reads until it would block or the buffer is full), parse every
frame header in it and hand out one joined chunk per channel and drain: a fast stream
arrives in chunks of up to :data:`BUFFER` bytes, a slow one as soon as each frame is there.

Both yield ``(channel, bytes)`` with the websocket's channel numbers (1 stdout, 2 stderr,
3 the Status), until the server ends the stream. Only what a server sends is understood;
anything else is a :class:`FrameError`.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import zlib
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlencode, urlsplit

BUFFER = 1 << 20  # bytes drained from the socket before they are parsed and handed out
READ = 1 << 18  # the most one read asks for (a TLS read returns one 16 kB record anyway)
STDOUT, STDERR, STATUS = 1, 2, 3

CLOSE, PING, PONG = 0x8, 0x9, 0xA


class FrameError(OSError):
    """The server sent something that is not a frame a server may send."""


class Refused(Exception):
    """The server answered the SPDY upgrade with ``status`` (not 101); ``body`` is its text."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body


class Drain:
    """A non-blocking socket drained into one buffer; subclasses parse the frames in it."""

    closed = False  # the server ended the stream itself (not merely the end of the bytes)

    def __init__(self, sock: Any, timeout: float, leading: bytes = b"") -> None:
        self.sock = sock
        self.timeout = timeout
        self._leading = leading  # bytes read already (past an upgrade's answer)
        self._selector: selectors.BaseSelector | None = None

    def _wait(self, event: int) -> None:
        assert self._selector is not None
        self._selector.modify(self.sock, event)
        if not self._selector.select(self.timeout):
            raise TimeoutError(f"nothing came for {self.timeout:g}s")

    def _fill(self, view: memoryview, end: int, wait: bool) -> tuple[int, bool]:
        """Read into ``view[end:]`` until it would block (waiting first when ``wait``):
        the new end, and whether the connection ended."""
        limit = len(view)
        while end < limit:
            try:
                got = self.sock.recv_into(view[end:min(limit, end + READ)])
            except ssl.SSLWantReadError:
                got = -1
            except ssl.SSLWantWriteError:  # TLS wants to write first (a key update)
                self._wait(selectors.EVENT_WRITE)
                continue
            except BlockingIOError:
                got = -1
            if got == 0:
                return end, True
            if got > 0:
                end += got
                wait = False
                continue
            if not wait:
                break
            self._wait(selectors.EVENT_READ)
        return end, False

    def send(self, data: bytes) -> None:
        """Write ``data`` whole on the non-blocking socket (a pong, a ping's answer)."""
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except (ssl.SSLWantWriteError, BlockingIOError):
                self._wait(selectors.EVENT_WRITE)
            except ssl.SSLWantReadError:
                self._wait(selectors.EVENT_READ)

    def _parse(self, buf: bytearray, view: memoryview, end: int,
               out: list[tuple[int, memoryview]]) -> tuple[int, bool]:
        """Parse ``buf[:end]``: append the payload runs to ``out``; return how far it got
        (the rest is a partial header) and whether the stream is over."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        buf = bytearray(max(BUFFER, 2 * len(self._leading)))
        view = memoryview(buf)
        end = len(self._leading)  # buf[:end]: bytes not parsed yet
        view[:end], self._leading = self._leading, b""
        fresh = end > 0  # bytes no parse has seen are there already: parse before reading
        ended = False
        self.sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        try:
            while True:
                if not fresh:
                    end, ended = self._fill(view, end, wait=True)
                fresh = False
                runs: list[tuple[int, memoryview]] = []
                pos, over = self._parse(buf, view, end, runs)
                pieces: list[memoryview] = []
                current = -1
                for channel, run in runs:
                    if channel != current and pieces:
                        yield current, b"".join(pieces)
                        pieces = []
                    current = channel
                    pieces.append(run)
                if pieces:
                    yield current, b"".join(pieces)
                del runs, pieces
                if over or ended:
                    return
                rest = bytes(view[pos:end])  # a partial header or control frame: small
                view[:len(rest)] = rest
                end = len(rest)
        finally:
            self._selector.close()
            self._selector = None


# -- the websocket channel protocol --------------------------------------------------------
class Frames(Drain):
    """``(channel, bytes)`` off a connected websocket's socket, until the server's close
    frame or the end of the connection. ``pong`` answers a ping (the server's payload).
    Raises TimeoutError when nothing came for ``timeout`` seconds, OSError (FrameError
    included) when the stream broke."""

    def __init__(self, sock: Any, timeout: float,
                 pong: Callable[[bytes], None] = lambda _payload: None) -> None:
        super().__init__(sock, timeout)
        self.pong = pong
        self._left = 0  # payload bytes of the current data frame still to come
        self._channel = -1  # the current message's channel; -1 while its first byte is to come

    def _parse(self, buf: bytearray, view: memoryview, end: int,
               out: list[tuple[int, memoryview]]) -> tuple[int, bool]:
        pos = 0
        while pos < end:
            if self._left:
                if self._channel < 0:
                    self._channel = buf[pos]
                    pos += 1
                    self._left -= 1
                    continue
                take = min(self._left, end - pos)
                out.append((self._channel, view[pos:pos + take]))
                pos += take
                self._left -= take
                continue
            head = _ws_header(buf, pos, end)
            if head is None:
                break  # a partial header: the rest comes with the next read
            opcode, length, size = head
            if opcode >= CLOSE:
                if end - pos < size + length:
                    break
                payload = bytes(view[pos + size:pos + size + length])
                pos += size + length
                if opcode == CLOSE:
                    self.closed = True
                    return pos, True
                if opcode == PING:
                    self.pong(payload)
                continue
            if opcode in (0x1, 0x2):
                self._channel = -1  # a new message: its first byte is the channel
            elif opcode != 0x0:
                raise FrameError(f"the exec stream sent a frame of opcode {opcode}")
            pos += size
            self._left = length
        return pos, False


def _ws_header(buf: bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
    """``(opcode, payload length, header size)`` of the frame at ``pos``, or None when
    its header is not all there yet."""
    if end - pos < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    if second & 0x80:
        raise FrameError("the exec stream sent a masked frame (only clients mask)")
    if first & 0x70:
        raise FrameError("the exec stream sent a frame with reserved bits set")
    length, size = second & 0x7F, 2
    if length == 126:
        size = 4
    elif length == 127:
        size = 10
    if end - pos < size:
        return None
    if size > 2:
        length = int.from_bytes(buf[pos + 2:pos + size], "big")
    return first & 0x0F, length, size


# -- SPDY/3.1 ------------------------------------------------------------------------------
# The header-compression dictionary of SPDY/3 (draft-mbelshe-httpbis-spdy-00 section 2.6.10.1):
# length-prefixed words, then one run of text. zlib checks it by its Adler-32 (0xe3c6a7c2).
_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status 200_OK version HTTP/1.1 url public set-cookie "
    "keep-alive origin").split()
_TEXT = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
    "charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(len(w).to_bytes(4, "big") + w.replace("_", " ").encode()
                      for w in _WORDS) + _TEXT.encode()

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, SPDY_PING, GOAWAY = 1, 2, 3, 4, 6, 7
FLAG_FIN = 0x01
CANCEL = 5  # RST_STREAM's status when a stream is closed for good (not a failure)
# The client's streams (odd ids, made in this order, as kubectl makes them) -> channels.
SPDY_STREAMS = ((1, "error", STATUS), (3, "stdout", STDOUT), (5, "stderr", STDERR))
MAX_CONTROL = 1 << 16  # a control frame (headers, settings) longer than this is garbled
PROTOCOL = "v4.channel.k8s.io"


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return ((0x8000 | 3) << 16 | kind).to_bytes(4, "big") + \
        (flags << 24 | len(payload)).to_bytes(4, "big") + payload


def syn_streams() -> bytes:
    """The client's SYN_STREAM frames, each already half-closed (FIN: nothing is sent on
    them), their header blocks compressed in one zlib stream with the SPDY dictionary."""
    packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)
    frames = b""
    for stream, kind, _channel in SPDY_STREAMS:
        block = (1).to_bytes(4, "big")
        for text in ("streamtype", kind):
            block += len(text).to_bytes(4, "big") + text.encode()
        packed = packer.compress(block) + packer.flush(zlib.Z_SYNC_FLUSH)
        frames += _control(SYN_STREAM, FLAG_FIN,
                           stream.to_bytes(4, "big") + bytes(4) + bytes(2) + packed)
    return frames


def upgrade_request(url: str, query: Sequence[tuple[str, Any]],
                    headers: Mapping[str, str]) -> bytes:
    """The HTTP/1.1 request that asks for the SPDY upgrade of an exec (kubectl's POST)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + ("?" + urlencode(list(query)) if query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}",
             "Connection: Upgrade", "Upgrade: SPDY/3.1",
             f"X-Stream-Protocol-Version: {PROTOCOL}", "Content-Length: 0",
             "User-Agent: cellship"]
    lines += [f"{name}: {value}" for name, value in headers.items()
              if name.lower() == "authorization"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def tls_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the official client's configuration says (what websocket-client gets)."""
    if not configuration.verify_ssl:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        cafile = configuration.ssl_ca_cert
        if cafile is None:
            try:
                import certifi

                cafile = certifi.where()
            except ImportError:
                cafile = None
        context = ssl.create_default_context(cafile=cafile)
        if configuration.assert_hostname is False:
            context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def open_spdy(configuration: Any, url: str, query: Sequence[tuple[str, Any]],
              headers: Mapping[str, str], timeout: float) -> SpdyFrames:
    """Connect, upgrade to SPDY/3.1 and make the three streams. Raises Refused when the
    server answers with anything but 101, OSError when it cannot be reached."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    sock: Any = socket.create_connection((parts.hostname, port), timeout=min(timeout, 30.0))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            name = getattr(configuration, "tls_server_name", None) or parts.hostname
            sock = tls_context(configuration).wrap_socket(sock, server_hostname=name)
        sock.settimeout(timeout)
        sock.sendall(upgrade_request(url, query, headers))
        head, rest = _read_head(sock)
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        if status != 101:
            raise Refused(status, fields[2] if len(fields) > 2 else "",
                          rest + _read_some(sock, head))
        sock.sendall(syn_streams())
    except BaseException:
        sock.close()
        raise
    return SpdyFrames(sock, timeout, rest)


def _read_head(sock: Any) -> tuple[bytes, bytes]:
    """The response's status line and headers, and the bytes read past them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the API server closed the connection before it answered")
        data += chunk
        if len(data) > MAX_CONTROL:
            raise FrameError("the API server's answer to the upgrade has no end")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _read_some(sock: Any, head: bytes) -> bytes:
    """The body of a refusal, as much of it as Content-Length says (at most 64 kB)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = min(int(value), MAX_CONTROL)
    body = b""
    try:
        while len(body) < length:
            chunk = sock.recv(length - len(body))
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    return body


class SpdyFrames(Drain):
    """``(channel, bytes)`` off an upgraded SPDY/3.1 exec connection (see
    :func:`open_spdy`), until every stream has ended, the server's GOAWAY, or the end of
    the connection. ``leading`` is what was read past the upgrade's answer. Pings are
    answered; the server's header blocks (SYN_REPLY) are not needed and not decoded."""

    def __init__(self, sock: Any, timeout: float, leading: bytes = b"") -> None:
        super().__init__(sock, timeout, leading)
        self._left = 0  # payload bytes of the current data frame still to come
        self._channel = 0  # where they go (0: a stream of none of ours: dropped)
        self._open = {stream for stream, _kind, _channel in SPDY_STREAMS}
        self._channels = {stream: channel for stream, _kind, channel in SPDY_STREAMS}
        self._finish = 0  # the stream whose data frame ends with FIN

    def _parse(self, buf: bytearray, view: memoryview, end: int,
               out: list[tuple[int, memoryview]]) -> tuple[int, bool]:
        pos = 0
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                if self._channel:
                    out.append((self._channel, view[pos:pos + take]))
                pos += take
                self._left -= take
                if not self._left and self._finish:
                    if self._ended(self._finish):
                        return pos, True
                continue
            if end - pos < 8:
                break
            word = int.from_bytes(buf[pos:pos + 4], "big")
            flags, length = buf[pos + 4], int.from_bytes(buf[pos + 5:pos + 8], "big")
            if not word & 0x80000000:  # a data frame
                stream = word & 0x7FFFFFFF
                pos += 8
                self._channel = self._channels.get(stream, 0)
                self._finish = stream if flags & FLAG_FIN else 0
                self._left = length
                if not length and self._finish and self._ended(stream):
                    return pos, True
                continue
            version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
            if version != 3 or length > MAX_CONTROL:
                raise FrameError(f"the exec stream sent a SPDY frame of version {version}, "
                                 f"type {kind}, {length} bytes")
            if end - pos < 8 + length:
                break  # the rest of this control frame comes with the next read
            payload = bytes(view[pos + 8:pos + 8 + length])
            pos += 8 + length
            if kind == SPDY_PING:
                self.send(_control(SPDY_PING, 0, payload))
            elif kind == GOAWAY:  # no new streams; ours still end as they end
                self.closed = True
            elif kind == RST_STREAM and len(payload) >= 8:
                stream = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                code = int.from_bytes(payload[4:8], "big")
                if code != CANCEL and stream in self._open:
                    raise FrameError(f"the server reset the exec's stream {stream} "
                                     f"(SPDY status {code})")
                if self._ended(stream):  # CANCEL: how the error stream ends, its Status sent
                    return pos, True
            elif kind in (SYN_REPLY, SYN_STREAM) and flags & FLAG_FIN and len(payload) >= 4:
                stream = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                if self._ended(stream):
                    return pos, True
            # SYN_REPLY, SETTINGS, HEADERS, WINDOW_UPDATE: nothing to do
        return pos, False

    def _ended(self, stream: int) -> bool:
        """Stream ``stream`` sent its last byte; True once all of ours have."""
        self._finish = 0
        self._open.discard(stream)
        if not self._open:
            self.closed = True
            return True
        return False
