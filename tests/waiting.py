"""Polling with a deadline: tests wait for a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout``
    seconds with a message saying what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def answers(url: str) -> bool:
    """True when ``url`` answers 200 right now (a server still starting refuses or times out)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """GET /jobs/{id}, which must answer 200."""
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_job_status(
    client: httpx.Client, job_id: str, statuses: set[str], timeout: float, logs: Callable[[], str]
) -> dict[str, Any]:
    """Poll GET /jobs/{id} until its status is one of ``statuses``; fail with the servers' logs."""
    try:
        return wait_until(
            lambda: (record := get_job(client, job_id))["status"] in statuses and record,
            timeout,
            f"job {job_id} to reach {sorted(statuses)}",
            interval=0.2,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n----- server logs -----\n{logs()}") from None
