"""``python -m cellship.storage download s3://BUCKET/PREFIX DIR``: a prefix into a folder,
with the credentials of the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``, ``AWS_REGION``; in a pod: env from the Secret). It is the init step of
a Deployment that serves a model straight from a bucket (``cellship deploy s3://...``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cellship.errors import CellshipError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "download":
        sys.stderr.write("usage: python -m cellship.storage download s3://BUCKET/PREFIX DIR\n")
        return 2
    from cellship.fetch.progress import Progress
    from cellship.storage import client, credentials, sync
    from cellship.storage.url import parse

    try:
        url = parse(args[1])
        found = credentials.from_environment(os.environ)
        dest = Path(args[2])
        outcome = sync.sync_down(client.connect(found), url, dest, found,
                                 state_dir=dest.parent / f".{dest.name}.s3",
                                 progress=Progress(f"downloading {url}", sys.stdout, every=2.0))
    except CellshipError as err:
        sys.stderr.write(f"cellship: {err}\n")
        return 1
    if not outcome.files and not outcome.unchanged:
        sys.stderr.write(f"cellship: {url} holds no objects (bucket {url.bucket}, endpoint "
                         f"{found.where}): nothing to serve.\n")
        return 1
    print(f"cellship: downloaded {outcome.files} file(s), {outcome.bytes} bytes from {url} "
          f"into {dest} in {outcome.seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
