"""Idempotency-Key fingerprints: a key replays its first request's job only for the same request.

As the IETF Idempotency-Key draft has it, the server keeps a fingerprint of the request a key
first came with; a later request with that key but another fingerprint is refused (422
``idempotency_key_reused``) rather than answered with a job it did not ask for.

The fingerprint is taken from the job the request would make, not from its bytes: the kind
of job, the file name and size (for an images job: the first file's name, or how many files,
and their total size), the direct upload it names, the telemetry file's name and size (when
sent), the stream's source without credentials, and every parameter and stream option after
validation (so ``threshold=0.5`` and ``params={"threshold": 0.5}`` are one request). A video's
content is not hashed: that would read the whole upload again on every submission with a key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.errors import IdempotencyKeyReused
from core.jobs import Job, JobParams, job_blob_prefix


def request_fingerprint(job: Job) -> str:
    """The fingerprint of the request that makes ``job`` (not yet stored: its own id)."""
    own_input = job.input_blob.startswith(job_blob_prefix(job.id))  # stored for this request alone
    described: dict[str, Any] = {
        "kind": job.kind.value,
        "filename": job.filename,
        "size": job.size_bytes,
        "files": [job.files_total, job.files_failed],
        "input": None if own_input else job.input_blob,  # a direct upload: which one
        "source": job.source,
        "stream": job.stream.model_dump(mode="json") if job.stream is not None else None,
        "params": job.params.model_dump(mode="json"),
    }
    if job.telemetry is not None:  # only then: the fingerprints of jobs without telemetry stay as they were
        described["telemetry"] = [job.telemetry.filename, job.telemetry.size_bytes]
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def check_same_request(earlier: Job, fingerprint: str | None) -> None:
    """Raise IdempotencyKeyReused unless ``earlier`` (the job holding the key) was made by a
    request with this fingerprint. A job recorded before fingerprints existed has none: it is
    replayed as before."""
    if earlier.idempotency_fingerprint is None or fingerprint is None:
        return
    if earlier.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {earlier.idempotency_key!r} was used for a different request (job {earlier.id}); "
            "send a new key with a new request"
        )


def check_same_params(earlier: Job, key: str | None, params: JobParams) -> None:
    """A request naming direct uploads that are a job already (``earlier``) gets that job back,
    whatever its key. Sent with that job's own key, though, it is a replay, and must ask what
    the job was made with: IdempotencyKeyReused if its parameters differ."""
    if key is not None and earlier.idempotency_key == key:
        check_same_request(earlier, request_fingerprint(earlier.model_copy(update={"params": params})))

