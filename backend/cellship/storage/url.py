"""``s3://bucket/prefix`` locations: parsed once, at the edge, with the rule in the error.

Any S3-compatible store is addressed the same way (AWS, GCS's interoperability API, MinIO,
Ceph, ``rclone serve s3``); which one is the endpoint's business (the Secret's
``AWS_ENDPOINT_URL``), never the URL's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cellship.errors import UsageError

SCHEME = "s3://"
# S3's bucket rules (3-63 characters: lower-case letters, digits, '.', '-', starting and
# ending with a letter or digit); GCS and MinIO accept the same names.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3(text: str | None) -> bool:
    return bool(text) and str(text).startswith(SCHEME)


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key prefix (no leading or trailing '/'; '' for the whole bucket)."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, relative: str) -> str:
        """The object key of ``relative`` (a '/'-separated path) under this prefix."""
        relative = relative.strip("/")
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def child(self, relative: str) -> "S3Url":
        return S3Url(self.bucket, self.key(relative))

    @property
    def dir_prefix(self) -> str:
        """The prefix as listed: ``runs/a/`` (so ``runs/ab`` is not under ``runs/a``)."""
        return f"{self.prefix}/" if self.prefix else ""

    @property
    def name(self) -> str:
        """The last part of the prefix (``digits`` of ``s3://b/models/digits``)."""
        return self.prefix.rsplit("/", 1)[-1] if self.prefix else self.bucket


def parse(text: str, what: str = "an s3:// location") -> S3Url:
    """``s3://bucket/some/prefix`` -> S3Url; a UsageError with an example otherwise."""
    example = "e.g. s3://my-bucket/runs/digits"
    if not is_s3(text):
        raise UsageError(f"{what} {text!r} must start with s3://, {example}.")
    rest = text[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise UsageError(f"{what} {text!r}: {bucket!r} is not a bucket name (3-63 lower-case "
                         f"letters, digits, '.' or '-', starting and ending with a letter or "
                         f"digit), {example}.")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or any(c.isspace() or ord(c) < 32 for c in prefix):
        raise UsageError(f"{what} {text!r}: the path after the bucket may not hold '.', '..' "
                         f"or spaces, {example}.")
    return S3Url(bucket, "/".join(parts))
