"""A prefix of a bucket into a local folder: what is new or changed, resumable, checked.

:func:`sync_down` lists the prefix, skips each object whose local copy has its size and
whose ETag was recorded for it (``<state>/<hash>.json``, outside the destination), and
streams the rest: an ordinary file goes to a ``.part`` file in the state folder and is
renamed into place only once its size and SHA-256 (the ``x-amz-meta-sha256`` the uploader
sets; objects without it are checked by size) match, so the destination never holds a half
file that looks complete; a broken download resumes from the ``.part``'s bytes with a
Range request while the ETag is unchanged. An ``append`` sync (a TensorBoard logdir: event
files only grow) fetches only the bytes past the local file's end and appends them in
place, so TensorBoard, which keeps its files open, reads them as they come; a file that is
not a prefix of the object any more is rewritten whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from cellship.fetch.progress import Progress, Quiet
from cellship.inside.objects import CHUNK, SHA_META, store_errors
from cellship.storage.credentials import Credentials
from cellship.storage.errors import StorageError
from cellship.storage.url import S3Url

STATE_DIR = ".s3"


@dataclass(frozen=True)
class Remote:
    """One object under a prefix: its path relative to the prefix, size and ETag."""

    path: str
    size: int
    etag: str


@dataclass
class SyncOutcome:
    files: int = 0
    bytes: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


def listing(s3: Any, url: S3Url, exclude: Sequence[str] = ()) -> list[Remote]:
    """Every object under ``url`` (all pages), minus the relative prefixes ``exclude``."""
    out = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=url.bucket, Prefix=url.dir_prefix):
        for item in page.get("Contents") or ():
            rel = item["Key"][len(url.dir_prefix):]
            if not rel or rel.endswith("/") or any(rel == e or rel.startswith(e.rstrip("/") + "/")
                                                   for e in exclude):
                continue
            out.append(Remote(rel, int(item["Size"]), str(item.get("ETag", "")).strip('"')))
    return out


def _safe(dest: Path, rel: str) -> Path:
    """The local path of ``rel``, refused if it would leave ``dest`` (a key with ``..``)."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise StorageError(f"The object key {rel!r} cannot be a file under {dest}.")
    return dest.joinpath(*parts)


class _State:
    """ETags of what a destination already holds, and of half-done downloads."""

    def __init__(self, folder: Path, url: S3Url, dest: Path) -> None:
        self.folder = folder
        name = hashlib.sha256(f"{url}\0{dest.resolve()}".encode()).hexdigest()[:16]
        self.path = folder / f"{name}.json"
        self.parts = folder / name
        try:
            self.data: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


def _hash_file(path: Path, digest: Any, limit: int | None = None) -> None:
    with open(path, "rb") as handle:
        left = limit
        while left is None or left > 0:
            block = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)


def _get(s3: Any, url: S3Url, rel: str, start: int, etag: str) -> Any:
    kwargs: dict[str, Any] = {"Bucket": url.bucket, "Key": url.key(rel)}
    if start:
        kwargs["Range"] = f"bytes={start}-"
    if etag:
        kwargs["IfMatch"] = f'"{etag}"'
    return s3.get_object(**kwargs)


def _stream(body: Any, handle: Any, digest: Any, progress: Progress) -> int:
    count = 0
    for block in body.iter_chunks(CHUNK):
        handle.write(block)
        digest.update(block)
        count += len(block)
        progress.add(len(block))
    return count


def _check(rel: str, url: S3Url, size: int, got: int, digest: Any, meta: dict[str, str]) -> None:
    if got != size:
        raise StorageError(f"Downloading {url.key(rel)} from bucket {url.bucket} stopped at "
                           f"{got} of {size} bytes; run the command again (it resumes).")
    want = (meta or {}).get(SHA_META)
    if want and digest.hexdigest() != want:
        raise StorageError(f"{url.key(rel)} in bucket {url.bucket} does not match its "
                           "SHA-256 (changed during the download, or damaged): run the "
                           "command again.")


def _download(s3: Any, url: S3Url, item: Remote, target: Path, state: _State,
              progress: Progress) -> int:
    """Into a ``.part`` (resumed while its ETag holds), checked, then renamed."""
    state.parts.mkdir(parents=True, exist_ok=True)
    part = state.parts / hashlib.sha256(item.path.encode()).hexdigest()[:24]
    marker = part.with_suffix(".etag")
    have = part.stat().st_size if part.exists() else 0
    if have and (not marker.exists() or marker.read_text() != item.etag or have > item.size):
        have = 0
    digest = hashlib.sha256()
    if have:
        _hash_file(part, digest, have)
    marker.write_text(item.etag)
    response = _get(s3, url, item.path, have, item.etag if have else "")
    with open(part, "ab" if have else "wb") as handle:
        got = have + _stream(response["Body"], handle, digest, progress)
    _check(item.path, url, item.size, got, digest, response.get("Metadata") or {})
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, target)
    marker.unlink(missing_ok=True)
    return got - have


def _append(s3: Any, url: S3Url, item: Remote, target: Path, progress: Progress) -> int:
    """The bytes past the local end, appended in place; whole again if not a prefix."""
    have = target.stat().st_size if target.exists() else 0
    if have >= item.size:  # not a longer version of the local file: fetch it whole
        have = 0
    digest = hashlib.sha256()
    if have:
        _hash_file(target, digest, have)
    response = _get(s3, url, item.path, have, "")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "r+b" if have else "wb") as handle:
        handle.seek(have)
        got = have + _stream(response["Body"], handle, digest, progress)
        handle.truncate()
    want = (response.get("Metadata") or {}).get(SHA_META)
    if want and digest.hexdigest() != want and have:
        # The local part was not the object's beginning: fetch it whole.
        return _append(s3, url, item, _truncate(target), progress)
    _check(item.path, url, item.size, got, digest, response.get("Metadata") or {})
    return got - have


def _truncate(path: Path) -> Path:
    with open(path, "r+b") as handle:
        handle.truncate(0)
    return path


def sync_down(s3: Any, url: S3Url, dest: Path, credentials: Credentials, *, state_dir: Path,
              append: bool = False, exclude: Sequence[str] = (),
              progress: Progress | None = None) -> SyncOutcome:
    """Bring ``url``'s objects into ``dest`` (see the module's note); StorageError names
    the bucket, endpoint and credentials' source when the store refuses."""
    from cellship.storage.client import explain

    progress = progress or Quiet("sync")
    started = time.monotonic()
    outcome = SyncOutcome()
    dest.mkdir(parents=True, exist_ok=True)
    state = _State(state_dir, url, dest)
    try:
        items = listing(s3, url, exclude)
        todo = []
        for item in items:
            target = _safe(dest, item.path)
            if target.exists() and target.stat().st_size == item.size \
                    and state.data.get(item.path) == item.etag:
                outcome.unchanged += 1
            else:
                todo.append((item, target))
        progress.start(sum(i.size for i, _ in todo))
        for item, target in todo:
            moved = (_append(s3, url, item, target, progress) if append
                     else _download(s3, url, item, target, state, progress))
            state.data[item.path] = item.etag
            state.save()
            outcome.files += 1
            outcome.bytes += moved
    except store_errors() as err:
        state.save()
        raise explain(err, url, credentials, "read") from None
    outcome.seconds = time.monotonic() - started
    return outcome


def read_json(s3: Any, url: S3Url, key: str) -> dict[str, Any] | None:
    """A small JSON object (a manifest); None when there is none."""
    try:
        response = s3.get_object(Bucket=url.bucket, Key=key)
    except store_errors() as err:
        code = str((getattr(err, "response", None) or {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return json.loads(response["Body"].read())


def wait_for(s3: Any, url: S3Url, key: str, credentials: Credentials, timeout: float,
             alive: Callable[[], bool], interval: float = 1.0,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll for the object ``key`` of ``url``'s bucket (the uploader's manifest) while
    ``alive()`` (the uploader still runs) and ``timeout`` has not passed."""
    from cellship.storage.client import explain

    end = time.monotonic() + timeout
    while True:
        try:
            found = read_json(s3, url, key)
        except store_errors() as err:
            raise explain(err, url, credentials, "read") from None
        if found is not None:
            return found
        if time.monotonic() >= end or not alive():
            # One last look: the uploader may have finished just now.
            again = read_json(s3, url, key)
            if again is not None:
                return again
            why = (f"after {timeout:g} s" if alive() else "and the uploading container has "
                   "ended")
            raise StorageError(f"The job's upload to {url} (bucket {url.bucket}) at "
                               f"{credentials.where} did not complete: no s3://{url.bucket}/"
                               f"{key} {why}. The chief pod's keeper log says why (`kubectl "
                               "logs POD -c keeper`); what was uploaded so far is in the "
                               "bucket.")
        sleep(interval)


def remote_names(items: Iterable[Remote]) -> list[str]:
    return sorted(i.path for i in items)
