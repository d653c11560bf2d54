"""Reproducible image layers: the same files give the same tar.gz, byte for byte.

A layer's digest is its identity in a registry. If it changed with every build (file
mtimes, the build user's uid, the order ``os.walk`` happened to return, gzip's timestamp),
every rebuild would upload every layer again and no two builds could be compared. So a
layer here depends only on the paths, contents, kinds and executable bits of its files:
entries are sorted, parent directories are written explicitly, mtime is 0, uid/gid 0 with
empty user/group names, modes are 0755 (dirs and executables) or 0644, and the gzip header
carries no name and mtime 0.

Compression is pigz-style: the tar stream is cut in fixed 1 MiB chunks, each deflated in a
thread (zlib releases the GIL) with the previous chunk's last 32 KiB as its dictionary, and
the pieces are joined into one gzip member. Chunk borders depend on the byte count only, so
the output does not depend on the number of threads; a 2 GB dependency layer compresses
about as many times faster as there are cores. A chunk on which deflate would save under
10% (model weights: float32 noise as far as gzip can tell) is stored instead of compressed,
which makes a 50 MB model layer ~5x faster to write for ~8% more bytes. The choice depends
only on the chunk's bytes, so it is reproducible too.

The digest (sha256 of the compressed bytes, what registries address) and the diff_id
(sha256 of the tar, what image configs list) are computed while the layer is written.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import stat
import struct
import tarfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from cellship.images.cache import cache_dir
from cellship.images.errors import BuildError

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

DEFAULT_LEVEL = 6
CHUNK = 1 << 20
_WINDOW = 1 << 15
_SAMPLE = 1 << 14
_READ = 1 << 20
_FORMAT = 1  # bump when the bytes of a layer for the same entries change


@dataclass(frozen=True)
class Entry:
    """One entry of a layer. ``path`` is where it lands in the image (``models/x/1/a.pb``, no
    leading slash); a file's bytes come from ``source`` (read when the layer is written) or
    ``data``."""

    path: str
    kind: str = "file"  # "file", "dir" or "symlink"
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644
    target: str = ""  # symlink target
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Layer:
    """A layer: ``path`` holds the tar.gz whose sha256 is ``digest`` (None when the layer is
    known only from the layer index, see :func:`recall`)."""

    path: Path | None  # None: known from the layer index, bytes not at hand
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int
    created_by: str = ""

    def descriptor(self, media_type: str = DOCKER_LAYER) -> dict:
        return {"mediaType": media_type, "size": self.size, "digest": self.digest}

    def file(self) -> Path:
        """The layer's tar.gz on disk; a layer known only from the index has none, and
        must be materialised (rebuilt) before its bytes are pushed or archived."""
        if self.path is None:
            raise BuildError(f"layer {self.digest[:19]} is known only from the layer index; "
                             "its bytes are not on disk (rebuild it, or clear "
                             "~/.cache/cellship/layers)")
        return self.path


def image_path(path: str) -> str:
    """Normalise a path inside the image: no leading slash, no ``.`` or ``..`` parts."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise BuildError(f"{path!r} is not a usable path inside an image; give an absolute "
                         "path like /models/digits/1")
    return "/".join(parts)


def tree(source: Path, dest: str, *, preserve: bool = False) -> list[Entry]:
    """Entries for the directory ``source`` placed at ``dest`` in the image, with every
    parent of ``dest``. Symlinks stay symlinks; hard links become copies; sockets, fifos and
    devices are left out (a runtime provides /dev). With ``preserve`` (base root
    filesystems) owners and full modes are kept; otherwise they are normalised."""
    source = Path(source)
    if not source.is_dir():
        raise BuildError(f"{source} is not a directory; give the directory to put in the layer")
    entries: list[Entry] = []
    root = "" if dest.strip("/") == "" else image_path(dest)  # "/" puts a root filesystem
    if root:
        entries = parents(root)
        top = _entry(source, root, preserve)
        if top is not None:  # a directory always has an entry; checked for the type's sake
            entries.append(top)
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source).replace(os.sep, "/")
        base = "/".join(p for p in (root, "" if rel == "." else rel) if p)
        for name in sorted(dirnames + filenames):
            path = f"{base}/{name}" if base else name
            entry = _entry(Path(dirpath, name), path, preserve)
            if entry is not None:
                entries.append(entry)
        dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
    return entries


def parents(path: str) -> list[Entry]:
    """Directory entries for every proper parent of ``path`` (``a``, ``a/b`` for ``a/b/c``)."""
    parts = image_path(path).split("/")
    return [Entry("/".join(parts[:i]), "dir", mode=0o755) for i in range(1, len(parts))]


def _entry(path: Path, dest: str, preserve: bool) -> Entry | None:
    info = path.lstat()
    mode = stat.S_IMODE(info.st_mode)
    uid, gid = (info.st_uid, info.st_gid) if preserve else (0, 0)
    if stat.S_ISLNK(info.st_mode):
        return Entry(dest, "symlink", target=os.readlink(path), mode=0o777, uid=uid, gid=gid)
    if stat.S_ISDIR(info.st_mode):
        return Entry(dest, "dir", mode=mode if preserve else 0o755, uid=uid, gid=gid)
    if stat.S_ISREG(info.st_mode):
        normal = 0o755 if mode & 0o111 else 0o644
        return Entry(dest, "file", source=path, mode=mode if preserve else normal, uid=uid,
                     gid=gid)
    return None


def ordered(entries: Iterable[Entry]) -> list[tuple[str, Entry]]:
    """Entries by normalised path, parents first; a later entry for a path wins."""
    unique: dict[str, Entry] = {}
    for entry in entries:
        unique[image_path(entry.path)] = entry
    return sorted(unique.items(), key=lambda item: item[0].split("/"))


def content_key(entries: Iterable[Entry], level: int = DEFAULT_LEVEL) -> str:
    """A key for the exact bytes :func:`write_layer` would make: paths, kinds, modes,
    owners, link targets and the sha256 of every file's content, plus everything that shapes
    the compressed stream (level, chunk size, zlib version). Hashing 50 MB takes ~30 ms;
    compressing it takes ten times that, so a known key saves the work (see ``recall``)."""
    sha = hashlib.sha256(json.dumps({"format": _FORMAT, "level": level, "chunk": CHUNK,
                                     "zlib": zlib.ZLIB_RUNTIME_VERSION}).encode())
    for path, entry in ordered(entries):
        sha.update(json.dumps([path, entry.kind, entry.mode, entry.uid, entry.gid,
                               entry.target]).encode())
        if entry.kind != "file":
            continue
        if entry.data is not None:
            sha.update(hashlib.sha256(entry.data).digest())
            continue
        assert entry.source is not None
        digest = hashlib.sha256()
        try:
            with open(entry.source, "rb") as handle:
                while block := handle.read(_READ):
                    digest.update(block)
        except OSError as err:
            raise BuildError(f"cannot read {entry.source} for the layer: {err.strerror}") from err
        sha.update(digest.digest())
    return sha.hexdigest()


def remember(key: str, layer: Layer) -> None:
    """Record which digest a content key gave (``<cache>/layer-index/<key>.json``)."""
    record = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size,
              "uncompressed_size": layer.uncompressed_size}
    path = cache_dir("layer-index") / f"{key}.json"
    partial = path.with_name(path.name + f".{os.getpid()}")
    partial.write_text(json.dumps(record))
    os.replace(partial, path)


def recall(key: str, created_by: str = "") -> Layer | None:
    """The layer a content key gave before (no file: ``path`` is None), or None."""
    try:
        record = json.loads((cache_dir("layer-index") / f"{key}.json").read_text())
        return Layer(path=None, digest=record["digest"], diff_id=record["diff_id"],
                     size=record["size"], uncompressed_size=record["uncompressed_size"],
                     created_by=created_by)
    except (OSError, ValueError, KeyError):
        return None


def write_layer(entries: Iterable[Entry], out: Path, *, level: int = DEFAULT_LEVEL,
                threads: int | None = None, created_by: str = "",
                tee: Callable[[bytes], None] | None = None) -> Layer:
    """Write ``entries`` as a reproducible tar.gz at ``out`` (``tee`` also gets every
    compressed block as it is written: a streaming upload follows the writer)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as raw:
        sink = _HashingFile(raw, tee)
        gz = ParallelGzip(sink, level=level, threads=threads)
        try:
            offset = 0
            for path, entry in ordered(entries):
                offset += _add(gz, path, entry)
            end = 2 * tarfile.BLOCKSIZE
            end += -(offset + end) % tarfile.RECORDSIZE  # pad to a record, as tar does
            gz.write(b"\0" * end)
        finally:
            gz.close()
    os.replace(partial, out)
    return Layer(path=out, digest="sha256:" + sink.sha.hexdigest(),
                 diff_id="sha256:" + gz.sha.hexdigest(), size=sink.size,
                 uncompressed_size=gz.size, created_by=created_by)


def _add(gz: "ParallelGzip", path: str, entry: Entry) -> int:
    """Write one tar member (PAX format, like tarfile's) straight into the compressor,
    without tarfile's stream buffer (which copies every block twice). Returns its bytes."""
    info = tarfile.TarInfo(path)
    info.mtime = 0
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    elif entry.data is not None:
        info.size = len(entry.data)
    if entry.kind != "file" or entry.data is not None:
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        body = entry.data or b""
        pad = -len(body) % tarfile.BLOCKSIZE
        gz.write(header + body + b"\0" * pad)
        return len(header) + len(body) + pad
    assert entry.source is not None
    try:
        with open(entry.source, "rb") as handle:
            info.size = size = os.fstat(handle.fileno()).st_size
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            gz.write(header)
            left = size
            while left:
                block = handle.read(min(_READ, left))
                if not block:
                    raise BuildError(f"{entry.source} shrank while the layer was written; "
                                     "build again once nothing writes to it")
                gz.write(block)
                left -= len(block)
    except OSError as err:
        raise BuildError(f"cannot read {entry.source} for the layer: {err.strerror}") from err
    pad = -size % tarfile.BLOCKSIZE
    gz.write(b"\0" * pad)
    return len(header) + size + pad


class _HashingFile:
    """Write-through wrapper that hashes and counts what reaches the file."""

    def __init__(self, raw: BinaryIO, tee: Callable[[bytes], None] | None = None) -> None:
        self.raw = raw
        self.tee = tee
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.tee is not None:
            self.tee(data)
        return self.raw.write(data)


def _incompressible(data: bytes) -> bool:
    """Whether deflate would save less than 10% on ``data``, judged on three 16 KiB samples
    at level 1 (about 5% of the cost of compressing it). Model weights are like this: gzip
    saves ~7% on float32 weights at 5x the time of storing them."""
    if len(data) < 3 * _SAMPLE:
        return False
    step = (len(data) - _SAMPLE) // 2
    sample = b"".join(data[i:i + _SAMPLE] for i in (0, step, len(data) - _SAMPLE))
    return len(zlib.compress(sample, 1)) > 0.9 * len(sample)


def _deflate(data: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    if level > 0 and _incompressible(data):
        level = 0  # stored blocks: valid deflate, ~memcpy speed
    if zdict:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY)
    return comp.compress(data) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzip:
    """A write-only file object producing one reproducible gzip member (mtime 0, no name),
    deflating fixed-size chunks in parallel. Also hashes the uncompressed stream."""

    def __init__(self, out: _HashingFile | BinaryIO, *, level: int = DEFAULT_LEVEL,
                 threads: int | None = None, chunk: int = CHUNK) -> None:
        self.out = out
        self.level = level
        self.chunk = chunk
        self.sha = hashlib.sha256()
        self.size = 0
        self._crc = 0
        self._buf = bytearray()
        self._tail = b""
        workers = max(1, threads or os.cpu_count() or 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None
        self._pending: deque = deque()
        self._limit = workers * 2
        self._closed = False
        # gzip header: magic, deflate, no flags, mtime 0, xfl 0, OS unknown (255)
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self.size += len(data)
        view = memoryview(data)
        while len(view):
            room = self.chunk - len(self._buf)
            if not self._buf and len(view) >= self.chunk:
                piece, view = bytes(view[:self.chunk]), view[self.chunk:]
                self._submit(piece, last=False)
                continue
            self._buf += view[:room]
            view = view[room:]
            if len(self._buf) == self.chunk:
                piece, self._buf = bytes(self._buf), bytearray()
                self._submit(piece, last=False)
        return len(data)

    def _submit(self, piece: bytes, last: bool) -> None:
        zdict, self._tail = self._tail, piece[-_WINDOW:]
        if self._pool is None:
            self.out.write(_deflate(piece, zdict, self.level, last))
            return
        self._pending.append(self._pool.submit(_deflate, piece, zdict, self.level, last))
        while len(self._pending) >= self._limit:
            self.out.write(self._pending.popleft().result())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(bytes(self._buf), last=True)
            while self._pending:
                self.out.write(self._pending.popleft().result())
            self.out.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def flush(self) -> None:  # tarfile calls it; nothing is buffered downstream
        pass
