"""The S3 client factory, and what a refusal means in plain words.

Every failure of a store call goes through :func:`explain`, which turns the SDK's error
code into one sentence naming the bucket, the endpoint and where the keys came from (a
Secret's name, never its values), with the likely fix.
"""

from __future__ import annotations

import uuid
from typing import Any

from cellship.errors import MissingDependency
from cellship.inside.objects import new_client, store_errors
from cellship.storage.credentials import Credentials
from cellship.storage.errors import StorageError
from cellship.storage.url import S3Url

PROBE_DIR = ".cellship/probe"

# SDK error code -> what it means for the user.
_CODES = {
    "SignatureDoesNotMatch": "the secret key does not match the access key (a wrong "
                             "AWS_SECRET_ACCESS_KEY)",
    "InvalidAccessKeyId": "the store does not know the access key (a wrong AWS_ACCESS_KEY_ID, "
                          "or keys of another store or endpoint)",
    "AccessDenied": "the keys may not do this here (the bucket's policy or the user's "
                    "permissions refuse it)",
    "403": "the store refused the keys (a wrong key pair, or no permission on the bucket)",
    "Forbidden": "the store refused the keys (a wrong key pair, or no permission on the bucket)",
    "NoSuchBucket": "the bucket does not exist there (create it, or fix the bucket's name "
                    "or the endpoint)",
    "404": "the bucket does not exist there (create it, or fix the bucket's name or the "
           "endpoint)",
    "NotFound": "the bucket does not exist there (create it, or fix the bucket's name or "
                "the endpoint)",
    "PermanentRedirect": "the bucket lives in another region (set AWS_REGION to its region)",
    "301": "the bucket lives in another region (set AWS_REGION to its region)",
}


def connect(credentials: Credentials) -> Any:
    """A boto3 S3 client for ``credentials`` (MissingDependency names the extra)."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise MissingDependency("Object storage (s3://) needs boto3: pip install "
                                "'cellship[s3]'.") from None
    return new_client(credentials.access_key, credentials.secret_key, credentials.endpoint,
                      credentials.region)


def error_code(err: BaseException) -> str:
    response = getattr(err, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    if code:
        return str(code)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(status) if status else type(err).__name__


def explain(err: BaseException, url: S3Url, credentials: Credentials, doing: str) -> StorageError:
    """``doing`` e.g. "write to" -> "Cannot write to s3://b/p at ENDPOINT with the keys of
    the Secret S in namespace N: <meaning> (<code>)."."""
    code = error_code(err)
    meaning = _CODES.get(code)
    name = type(err).__name__
    if meaning is None and name in ("EndpointConnectionError", "ConnectTimeoutError",
                                    "ConnectionClosedError", "ReadTimeoutError"):
        meaning = ("the endpoint does not answer (check AWS_ENDPOINT_URL: scheme, host and "
                   "port; is the store reachable from here?)")
    if meaning is None and isinstance(err, OSError):
        meaning = (f"the transfer broke ({err}); a local disk that is full says so here "
                   "too. Run it again: it resumes")
    if meaning is None and name == "NoCredentialsError":
        meaning = ("no credentials were found: name the Secret with --storage-secret, or set "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if meaning is None:
        meaning = f"the store said {str(err).strip() or name}"
    return StorageError(f"Cannot {doing} {url} (bucket {url.bucket}) at {credentials.where} "
                        f"with the keys of {credentials.source}: {meaning} [{code}].")


def check_access(s3: Any, url: S3Url, credentials: Credentials, write: bool = True) -> None:
    """Raise StorageError unless the bucket exists and the keys may list it (and, with
    ``write``, put and delete an object under the prefix): run at submit, before any pod."""
    try:
        s3.head_bucket(Bucket=url.bucket)
    except store_errors() as err:
        # A HEAD answer has no body, so a refusal is only "403": a listing says which.
        if error_code(err) in ("400", "403"):
            try:
                s3.list_objects_v2(Bucket=url.bucket, Prefix=url.dir_prefix, MaxKeys=1)
            except store_errors() as detail:
                raise explain(detail, url, credentials, "use the bucket of") from None
        raise explain(err, url, credentials, "use the bucket of") from None
    if not write:
        return
    key = url.key(f"{PROBE_DIR}/{uuid.uuid4().hex}")
    try:
        s3.put_object(Bucket=url.bucket, Key=key, Body=b"cellship access check\n")
        s3.delete_object(Bucket=url.bucket, Key=key)
    except store_errors() as err:
        raise explain(err, url, credentials, "write to") from None
