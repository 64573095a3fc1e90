"""Tenants' usage and quotas, for operators: ``GET /tenants/usage`` (admin keys only).

What each tenant's jobs hold now against its limits (core/quotas.py). The /metrics labels
name no tenant unless METRICS_TENANT_LABELS asks; this route is where an operator sees who
uses what.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AdminDep, BackendsDep, SettingsDep
from api.schemas import error_responses
from core.config import Settings
from core.jobs import DEFAULT_OWNER
from core.quotas import owner_jobs, tenant_usage

router = APIRouter(tags=["tenants"])

_ERRORS = error_responses(401, 403, 503)


class QuotaOut(BaseModel):
    max_queued_jobs: int = Field(description="0: no limit")
    max_processing_jobs: int
    max_stored_bytes: int
    max_stream_hours: float


class UsageOut(BaseModel):
    queued_jobs: int
    processing_jobs: int
    stored_bytes: int = Field(description="input bytes (videos, images) of the tenant's jobs in storage")
    stream_hours_booked: float | None = Field(
        description="streaming time its unfinished streams have booked; null: one of them has no end")


class TenantUsage(BaseModel):
    tenant: str
    usage: UsageOut
    quota: QuotaOut


class TenantsUsage(BaseModel):
    tenants: list[TenantUsage]


@router.get("/tenants/usage", response_model=TenantsUsage, responses=_ERRORS,
            summary="Each tenant's usage and quotas (admin keys only)",
            description="Every tenant with a key: its queued and processing jobs, stored input bytes and booked "
            "stream hours, beside its limits (0: none). Reads every job record of those tenants.")
def tenants_usage(settings: SettingsDep, backends: BackendsDep, caller: AdminDep) -> TenantsUsage:
    return TenantsUsage(tenants=[
        TenantUsage(tenant=owner, usage=UsageOut(**vars(tenant_usage(owner_jobs(backends.jobs, owner), settings))),
                    quota=QuotaOut(**vars(settings.quota_for(owner))))
        for owner in sorted(_configured_tenants(settings))
    ])


def _configured_tenants(settings: Settings) -> set[str]:
    """The tenants of the configured keys; with none (the open mode), the one tenant there is."""
    return {entry.owner for entry in settings.accepted_keys} or {DEFAULT_OWNER}
