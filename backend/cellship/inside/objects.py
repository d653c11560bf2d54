"""A job's files into object storage (``s3://``), from inside the chief pod.

TensorFlow in the pod cannot write ``s3://`` itself (no tensorflow-io for current
TensorFlow), so the chief writes its output dir, logdir and backups locally as always, and
the keeper container (:mod:`cellship.inside.keeper`) ships them with this module: the
logdir every few seconds while the program runs (changed files only, so TensorBoard can
read the bucket as the job goes), everything once the program has ended, and last a
manifest object that says the upload is complete (the home side waits for it).

Credentials come only from the environment the keeper container gets from the named
Kubernetes Secret (``secretKeyRef``): :data:`SECRET_KEYS`, the names the AWS CLI and SDKs
read. The upload plan (local folder -> bucket and prefix) is the one non-secret
``CELLSHIP_UPLOADS`` JSON value.

Every file is streamed (multipart above 8 MiB, never whole in memory) from a fixed-size
window of the file as it was listed, so an event file that grows meanwhile still uploads
a consistent prefix; its SHA-256 travels as object metadata (``x-amz-meta-sha256``), and
the home side checks it after download. boto3 is imported only here, only when used: the
image needs it just for jobs that write to a bucket.

Stdlib-only at import (shipped in the job's ConfigMap); uses no other cellship module.
"""

import hashlib
import io
import json
import os
import sys
import time

ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
ENDPOINT = "AWS_ENDPOINT_URL"
REGION = "AWS_REGION"
SECRET_KEYS = (ACCESS_KEY, SECRET_KEY, ENDPOINT, REGION)  # what the Secret holds
REQUIRED_KEYS = (ACCESS_KEY, SECRET_KEY)
DEFAULT_REGION = "us-east-1"
PLAN_ENV = "CELLSHIP_UPLOADS"
SHA_META = "sha256"  # x-amz-meta-sha256: the whole object's SHA-256, hex
PART_SIZE = 8 * 1024 * 1024
LIVE_INTERVAL = 5.0  # seconds between the logdir's uploads while the program runs
CHUNK = 1 << 20


def new_client(access_key=None, secret_key=None, endpoint=None, region=None, session=None):
    """An S3 client for any S3-compatible store: path-style addressing (MinIO, Ceph and
    rclone need it; AWS accepts it), retries with backoff, checksums only where the API
    requires them (stores other than AWS refuse some of the newer ones). ``access_key``
    None: the SDK's own chain (env, ``~/.aws``, instance roles)."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10, read_timeout=60,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    session = session or boto3.session.Session()
    kwargs = {"endpoint_url": endpoint or None, "config": config,
              "region_name": region or session.region_name or DEFAULT_REGION}
    if access_key:
        kwargs |= {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    return session.client("s3", **kwargs)


def client_from_env(environ=None):
    environ = os.environ if environ is None else environ
    return new_client(environ.get(ACCESS_KEY), environ.get(SECRET_KEY),
                      environ.get(ENDPOINT) or None,
                      environ.get(REGION) or environ.get("AWS_DEFAULT_REGION") or None)


def store_errors():
    """What a failed store call raises: the SDK's errors (refused, unreachable, bad
    credentials) and the local file's."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, Boto3Error, OSError)


def transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                          max_concurrency=4, io_chunksize=CHUNK)


class Window(io.RawIOBase):
    """The first ``size`` bytes of an open file, seekable (what the transfer manager
    reads its parts from)."""

    def __init__(self, handle, size):
        super().__init__()
        self._handle = handle
        self._size = size
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        return self._pos

    def readinto(self, buffer):
        left = self._size - self._pos
        if left <= 0:
            return 0
        view = memoryview(buffer)[:min(len(buffer), left)]
        self._handle.seek(self._pos)
        count = self._handle.readinto(view)
        self._pos += count or 0
        return count or 0


def sha256_of(handle, size):
    digest = hashlib.sha256()
    handle.seek(0)
    left = size
    while left > 0:
        block = handle.read(min(CHUNK, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def listing(folder):
    """``{relative path: (size, mtime_ns)}`` of every regular file under ``folder``."""
    out = {}
    if not os.path.isdir(folder):
        return out
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue  # deleted meanwhile
            if not os.path.islink(path) and os.path.isfile(path):
                rel = os.path.relpath(path, folder).replace(os.sep, "/")
                out[rel] = (info.st_size, info.st_mtime_ns)
    return out


def key_of(prefix, relative):
    return f"{prefix}/{relative}" if prefix else relative


class Uploader:
    """Uploads plan roots (``{"local", "bucket", "prefix", "live"}``) with ``client``;
    remembers what it sent (size and mtime per file), so each round sends what changed."""

    def __init__(self, client, roots, log=None):
        self.client = client
        self.roots = [dict(r) for r in roots]
        self.sent = {}  # (local root, relative) -> (size, mtime_ns, sha256)
        self.log = log or (lambda _m: None)
        self._config = transfer_config()

    def upload_file(self, path, bucket, key, size):
        """Stream one file's first ``size`` bytes to ``bucket/key``; its SHA-256."""
        with open(path, "rb") as handle:
            digest = sha256_of(handle, size)
            self.client.upload_fileobj(Window(handle, size), bucket, key,
                                       ExtraArgs={"Metadata": {SHA_META: digest}},
                                       Config=self._config)
        return digest

    def sync(self, live_only=False):
        """One round over the roots (only the live ones with ``live_only``):
        -> (files uploaded, bytes)."""
        files = size_sum = 0
        for root in self.roots:
            if live_only and not root.get("live"):
                continue
            for rel, (size, mtime) in listing(root["local"]).items():
                known = self.sent.get((root["local"], rel))
                if known is not None and known[:2] == (size, mtime):
                    continue
                try:
                    digest = self.upload_file(os.path.join(root["local"], rel), root["bucket"],
                                              key_of(root["prefix"], rel), size)
                except FileNotFoundError:
                    continue  # deleted meanwhile (a checkpoint rotated away)
                self.sent[(root["local"], rel)] = (size, mtime, digest)
                files += 1
                size_sum += size
        return files, size_sum

    def manifest(self, job_id):
        """What was uploaded, per root: the home side's proof of a complete upload."""
        roots = []
        for root in self.roots:
            entries = {rel: {"size": s, "sha256": h} for (local, rel), (s, _m, h)
                       in sorted(self.sent.items()) if local == root["local"]}
            roots.append({"bucket": root["bucket"], "prefix": root["prefix"], "files": entries})
        return {"job_id": job_id, "complete": True, "at": time.time(), "roots": roots}

    def write_manifest(self, bucket, key, job_id):
        body = json.dumps(self.manifest(job_id), indent=1).encode()
        self.client.put_object(Bucket=bucket, Key=key, Body=body,
                               ContentType="application/json",
                               Metadata={SHA_META: hashlib.sha256(body).hexdigest()})


def describe_error(err, plan):
    """One line for an upload that failed: where to, and the store's own words."""
    targets = ", ".join(sorted({f"s3://{r['bucket']}/{r['prefix']}" for r in plan["roots"]}))
    endpoint = os.environ.get(ENDPOINT) or "the AWS default endpoint"
    return (f"cellship: uploading the job's files to {targets} at {endpoint} failed: "
            f"{type(err).__name__}: {err}")


class Shipper:
    """The keeper's side: :meth:`tick` once per keeper poll with whether the program
    runs (None: not started yet); ``done`` once the final upload and manifest are in."""

    def __init__(self, plan, client=None, clock=time.monotonic, sleep=time.sleep,
                 out=None, attempts=3):
        self.plan = plan
        self.clock = clock
        self.sleep = sleep
        self.out = out or sys.stdout
        self.attempts = attempts
        self._client = client
        self._uploader = None
        self.next_live = 0.0
        self.done = False
        self.failed = None

    @classmethod
    def from_env(cls, environ=None, **kwargs):
        environ = os.environ if environ is None else environ
        text = environ.get(PLAN_ENV)
        return cls(json.loads(text), **kwargs) if text else None

    def say(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    @property
    def uploader(self):
        if self._uploader is None:
            self._uploader = Uploader(self._client or client_from_env(), self.plan["roots"])
        return self._uploader

    def tick(self, running):
        if running:
            self.done = False
            self.failed = None
            if self.clock() >= self.next_live:
                self.next_live = self.clock() + float(self.plan.get("interval", LIVE_INTERVAL))
                try:
                    self.uploader.sync(live_only=True)
                except store_errors() as err:  # the next round retries
                    self.say(describe_error(err, self.plan) + " (retrying)")
        elif running is False and not self.done and self.failed is None:
            self.finish()

    def finish(self):
        """Everything, then the manifest; retried ``attempts`` times with backoff."""
        started = self.clock()
        for attempt in range(1, self.attempts + 1):
            try:
                files, size = self.uploader.sync()
                manifest = self.plan["manifest"]
                self.uploader.write_manifest(manifest["bucket"], manifest["key"],
                                             self.plan.get("job_id"))
            except store_errors() as err:  # reported; then the files stay in the pod
                self.failed = describe_error(err, self.plan)
                if attempt < self.attempts:
                    self.sleep(2.0 * attempt)
                    continue
                self.say(self.failed + "; the files stay in this pod for `cellship fetch`")
                return False
            self.done = True
            total = len(self.uploader.sent)
            self.say(f"cellship: uploaded the job's files to object storage ({total} files; "
                     f"{files} files, {size} bytes in the last round, "
                     f"{self.clock() - started:.1f} s)")
            return True
        return False


def main(argv=None):
    """``python3 objects.py upload``: one final upload by the plan in the environment (a
    manual retry from inside the pod)."""
    args = sys.argv[1:] if argv is None else argv
    shipper = Shipper.from_env()
    if args[:1] != ["upload"] or shipper is None:
        sys.stderr.write(f"usage: {PLAN_ENV}=... objects.py upload\n")
        return 2
    return 0 if shipper.finish() else 1


if __name__ == "__main__":
    sys.exit(main())
