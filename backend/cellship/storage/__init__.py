"""Object storage (``s3://``, any S3-compatible store) for cluster jobs and served models.

- :mod:`.url`: ``s3://bucket/prefix`` parsed once, with the rule in the error;
- :mod:`.credentials`: where the keys come from: a named Kubernetes Secret read through the
  user's kubeconfig (the same Secret the pods get as ``secretKeyRef`` env), or the standard
  AWS environment/profile; never copied into a manifest, a ConfigMap or the job store;
- :mod:`.client`: the client factory and the access check a job's submit runs (a wrong key,
  Secret or bucket is one sentence naming the bucket, the endpoint and the Secret);
- :mod:`.sync`: listing and sync-down of a prefix into a local folder (resumes by size and
  ETag, checks each file's SHA-256), used by ``cellship fetch``, ``export --job`` and the
  live TensorBoard mirror.

The upload side runs in the pod: :mod:`cellship.inside.objects` (stdlib + boto3 only).
boto3 is the optional extra ``cellship[s3]``.
"""

from cellship.storage.errors import StorageError
from cellship.storage.url import S3Url, is_s3, parse

__all__ = ["S3Url", "StorageError", "is_s3", "parse"]
