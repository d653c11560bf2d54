"""The chief pod's file sender, run over ``exec`` by cellship at home (stdlib only).

Why over exec: every cluster lets the job's owner exec into its pods through the API
server (that is how ``kubectl cp`` works), so the job's files come home with no volume,
no object store and no port opened anywhere. Unlike ``kubectl cp``'s tar, each file is
sent from an offset (a broken stream resumes where it stopped; TensorBoard's event files
come over as their new bytes only) and ends with the SHA-256 of the whole file, so the
receiver knows a copy is complete and right.

``python3 sender.py list ROOT...`` prints one JSON line:
``{"ROOT": [[relative path, size, mtime], ...] or null when ROOT is missing}``.

``python3 sender.py send JSON`` (a JSON list of ``[path, offset]``) writes, per file:
``F {"path", "offset", "size"}\\n`` (offset 0 again when the file is now shorter than
asked), then ``C n\\n`` + n bytes as often as needed, then ``H sha256 end\\n``; or
``M {"path"}\\n`` for a file that is gone; and ``E\\n`` after the last file.

This file is copied verbatim into the job's ConfigMap: the two ends cannot drift.
"""

import hashlib
import json
import os
import stat
import sys

CHUNK = 1 << 20


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


def send_one(out, path, offset):
    try:
        handle = open(path, "rb")
    except OSError:
        out.write(b"M " + json.dumps({"path": path}).encode() + b"\n")
        return
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if offset > size:
            offset = 0  # replaced by a shorter file: start again
        out.write(b"F " + json.dumps({"path": path, "offset": offset, "size": size}).encode()
                  + b"\n")
        digest = hashlib.sha256()
        left = offset
        while left > 0:  # the receiver has these bytes; hash them for the whole-file digest
            block = handle.read(min(CHUNK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
        end = offset - left
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            digest.update(block)
            out.write(b"C %d\n" % len(block))
            out.write(block)
            end += len(block)
        out.write(b"H %s %d\n" % (digest.hexdigest().encode(), end))


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("list", "send"):
        sys.stderr.write("usage: sender.py list ROOT... | sender.py send JSON\n")
        return 2
    out = sys.stdout.buffer
    if args[0] == "list":
        out.write(json.dumps(listing(args[1:])).encode() + b"\n")
    else:
        for path, offset in json.loads(args[1]):
            send_one(out, path, int(offset))
        out.write(b"E\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
