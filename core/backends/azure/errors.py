"""The one place azure.core exceptions become ``core.errors`` types.

Every SDK call in this package runs inside ``azure_errors(...)``; nothing from
``azure.core.exceptions`` reaches callers. Messages name the endpoint and what we were
doing, because "connection refused" alone does not tell an operator which account failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from core.errors import (
    AlreadyExists,
    CattleCounterError,
    ConfigError,
    InvalidInput,
    LeaseLost,
    NotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)

CREDENTIAL_HINT = (
    "check AZURE_STORAGE_CONNECTION_STRING (its AccountKey), or, with AZURE_STORAGE_ACCOUNT_URL, "
    "that DefaultAzureCredential finds an identity holding the Storage Blob/Queue/Table Data "
    "Contributor roles"
)
POP_RECEIPT_MISMATCH = "PopReceiptMismatch"


def summary(exc: AzureError) -> str:
    """The first line of the SDK's message (the rest is XML and request ids)."""
    text = str(getattr(exc, "message", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    code = getattr(exc, "error_code", None)
    return f"{first} ({code})" if code else first


def convert(exc: AzureError, doing: str, endpoint: str) -> CattleCounterError:
    """The core error for an SDK exception raised while ``doing`` something at ``endpoint``."""
    where = f"{doing} at {endpoint}"
    if isinstance(exc, ClientAuthenticationError):
        return ConfigError(
            f"Azure Storage refused our credentials while {where}: {summary(exc)}; {CREDENTIAL_HINT}"
        )
    if isinstance(exc, ResourceNotFoundError):
        return NotFound(f"not found while {where}: {summary(exc)}")
    if isinstance(exc, ResourceExistsError):
        return AlreadyExists(f"already exists while {where}: {summary(exc)}")
    if isinstance(exc, ResourceModifiedError):
        return PreconditionFailed(f"changed by someone else while {where}: {summary(exc)}")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageUnavailable(f"cannot reach Azure Storage at {endpoint} while {doing}: {summary(exc)}")
    if isinstance(exc, HttpResponseError):
        return _by_status(exc, doing, where)
    return StorageError(f"Azure Storage failed while {where}: {summary(exc)}")


def _by_status(exc: HttpResponseError, doing: str, where: str) -> CattleCounterError:
    status = exc.status_code or 0
    if status in (401, 403):
        return ConfigError(f"Azure Storage denied access while {where}: {summary(exc)}; {CREDENTIAL_HINT}")
    if status == 412:
        return PreconditionFailed(f"changed by someone else while {where}: {summary(exc)}")
    if status == 429 or status >= 500:
        return StorageUnavailable(f"Azure Storage is unavailable or throttling while {where}: {summary(exc)}")
    if status in (400, 413, 416):
        return InvalidInput(f"Azure Storage rejected the request while {where}: {summary(exc)}")
    return StorageError(f"Azure Storage failed (HTTP {status}) while {where}: {summary(exc)}")


@contextmanager
def azure_errors(doing: str, endpoint: str) -> Iterator[None]:
    """Run SDK calls, converting any azure.core exception into a core error."""
    try:
        yield
    except AzureError as exc:
        raise convert(exc, doing, endpoint) from None


@contextmanager
def lease_errors(message_id: str, doing: str, endpoint: str) -> Iterator[None]:
    """Like azure_errors, but a missing message or a pop receipt mismatch means the lease
    is gone: the message was settled, or its lease expired and another consumer took it."""
    try:
        yield
    except AzureError as exc:
        status = getattr(exc, "status_code", None)
        code = str(getattr(exc, "error_code", "") or "")
        if isinstance(exc, ResourceNotFoundError) or (status == 400 and _is_receipt_mismatch(code)):
            raise LeaseLost(
                f"queue message {message_id} is no longer ours while {doing}: it was completed, "
                "released, or its lease expired and another consumer took it"
            ) from None
        raise convert(exc, doing, endpoint) from None


def _is_receipt_mismatch(code: str) -> bool:
    # error_code is a StorageErrorCode enum whose str() varies by SDK version
    return POP_RECEIPT_MISMATCH.lower() in code.lower().replace("_", "")
