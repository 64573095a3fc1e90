"""Short-lived signed download URLs, so that a browser's <video> and download links carry no API key.

An authenticated call (``POST /jobs/{id}/links``) mints ``/jobs/{id}/video?exp=...&sig=...``:
``sig`` is an HMAC over the path, the expiry and the job's owner, keyed with URL_SIGNING_SECRET.
The URL opens that one path until ``exp`` and nothing else; ``?download=true`` may be added
(it changes only the file's Content-Disposition).

Without URL_SIGNING_SECRET the secret is derived from the configured API keys: every API
replica shares them, and rotating the keys also ends every link signed with the old ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from core.config import Settings


@dataclass(frozen=True)
class Signature:
    """The ``exp`` and ``sig`` query parameters of a signed URL, as received."""

    expires: str
    sig: str


def signing_secret(settings: Settings) -> bytes:
    if settings.url_signing_secret:
        return settings.url_signing_secret.encode()
    keys = sorted(entry.key for entry in settings.accepted_keys)
    return hashlib.sha256("\n".join(["cattlecounter signed urls", *keys]).encode()).digest()


def _sign(secret: bytes, path: str, expires: int, owner: str) -> str:
    digest = hmac.new(secret, f"{path}\n{expires}\n{owner}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def expiry(ttl_s: int, now: float | None = None) -> int:
    """The unix time ``ttl_s`` seconds from now."""
    return int(now if now is not None else time.time()) + ttl_s


def signed_path(settings: Settings, path: str, owner: str, expires: int) -> str:
    """``path`` with ``exp`` and ``sig`` added: opens that path of a job of ``owner`` until ``expires``."""
    return f"{path}?exp={expires}&sig={_sign(signing_secret(settings), path, expires, owner)}"


def has_expired(signature: Signature, now: float | None = None) -> bool:
    """Whether ``signature``'s expiry has passed (or is no time at all). Needs no job: checked
    before the job is looked up."""
    try:
        expires = int(signature.expires)
    except ValueError:
        return True
    return expires < (now if now is not None else time.time())


def is_valid(settings: Settings, path: str, owner: str, signature: Signature, now: float | None = None) -> bool:
    """Whether ``signature`` was minted for ``path`` of a job of ``owner`` and has not expired."""
    if has_expired(signature, now):
        return False
    expected = _sign(signing_secret(settings), path, int(signature.expires), owner)
    return hmac.compare_digest(expected.encode(), signature.sig.encode())
