"""The chief pod's file sender, run over ``exec`` by cellship at home (stdlib only).

Why over exec: every cluster lets the job's owner exec into its pods through the API
server (that is how ``kubectl cp`` works), so the job's files come home with no volume,
no object store and no port opened anywhere. Unlike ``kubectl cp``'s tar, each file is
sent from an offset (a broken stream resumes where it stopped; TensorBoard's event files
come over as their new bytes only) and ends with a check of the whole file (its size and
digest), so the receiver knows a copy is complete and right.

``python3 sender.py list ROOT...`` prints one JSON line:
``{"ROOT": [[relative path, size, mtime], ...] or null when ROOT is missing}``.

``python3 sender.py send JSON [CHECK]`` (a JSON list of ``[path, offset]``; CHECK is
``crc32`` or ``sha256``, the default, which is all a sender before CHECK existed knew)
writes, per file: ``F {"path", "offset", "size", "check"}\\n`` (offset 0 again when the
file is now shorter than asked), then ``C n\\n`` + n bytes as often as needed, then
``H digest end\\n`` (hex, of the whole file: the first ``offset`` bytes are read here
too, the receiver hashes its copy of them from disk); or ``M {"path"}\\n`` for a file that
is gone; and ``E\\n`` after the last file.

Why CRC-32 is what cellship asks for: the digest travels in the same stream as the bytes,
so no digest could stop someone who can change those bytes (TLS guards the wire; the pod
and the API server are trusted either way); what it is for is accidents (a lost, repeated
or changed run of bytes, a stale staged prefix on resume, a file rewritten during the
copy), and CRC-32 catches every error burst up to 32 bits and any other change but one
in 2**32 (the size is compared exactly besides): the check of gzip, zip, PNG and btrfs's
data. It runs at ~6 GB/s where SHA-256 runs at ~1.8 (with SHA extensions), and a copy home
is CPU-bound on both ends (benchmarks/README.md, the k8s_fetch row).

This file is copied verbatim into the job's ConfigMap when the job is submitted, so the
cellship that fetches may be newer than the sender: a sender that does not name its check
in ``F`` (one from before CHECK) sent SHA-256, whatever was asked.
"""

import hashlib
import json
import os
import stat
import sys
import zlib

CHUNK = 1 << 20
CHECKS = ("sha256", "crc32")


class Crc32:
    """zlib's CRC-32 with hashlib's ``update``/``hexdigest``."""

    def __init__(self):
        self.value = 0

    def update(self, data):
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self):
        return "%08x" % self.value


def new_check(name):
    return Crc32() if name == "crc32" else hashlib.sha256()


def listing(roots):
    """Every regular file under each root (symlinks are not followed)."""
    out = {}
    for root in roots:
        if not os.path.isdir(root):
            out[root] = None
            continue
        files = []
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    files.append([os.path.relpath(path, root), info.st_size, info.st_mtime])
        out[root] = files
    return out


def send_one(out, path, offset, check="sha256", buffer=None):
    try:
        handle = open(path, "rb")
    except OSError:
        out.write(b"M " + json.dumps({"path": path}).encode() + b"\n")
        return
    view = memoryview(buffer if buffer is not None else bytearray(CHUNK))
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if offset > size:
            offset = 0  # replaced by a shorter file: start again
        out.write(b"F " + json.dumps({"path": path, "offset": offset, "size": size,
                                      "check": check}).encode() + b"\n")
        digest = new_check(check)
        left = offset
        while left > 0:  # the receiver has these bytes; hash them for the whole-file digest
            got = handle.readinto(view[:min(len(view), left)])
            if not got:
                break
            digest.update(view[:got])
            left -= got
        end = offset - left
        while True:
            got = handle.readinto(view)
            if not got:
                break
            block = view[:got]
            digest.update(block)
            out.write(b"C %d\n" % got)
            out.write(block)
            end += got
        out.write(b"H %s %d\n" % (digest.hexdigest().encode(), end))


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("list", "send"):
        sys.stderr.write("usage: sender.py list ROOT... | sender.py send JSON [CHECK]\n")
        return 2
    out = sys.stdout.buffer
    if args[0] == "list":
        out.write(json.dumps(listing(args[1:])).encode() + b"\n")
    else:
        check = args[2] if len(args) > 2 and args[2] in CHECKS else "sha256"
        buffer = bytearray(CHUNK)
        for path, offset in json.loads(args[1]):
            send_one(out, path, int(offset), check, buffer)
        out.write(b"E\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
