"""The test tiers themselves: the xdist scopes (tests/xdist_scopes.py) and the heavy mark
(tests/conftest.py) that `make test` and `make test-fast` rely on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.xdist_scopes import (
    LIVE,
    LIVE_MODULES,
    MODULE_SERVERS,
    SERVICE_MODULES,
    SERVICES,
    TENANT_MODULES,
    TENANTS,
    scope_of,
)

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_the_scopes_name_exists() -> None:
    """A renamed module would silently fall back to test-by-test scheduling."""
    assert all((ROOT / path).is_file() for path in LIVE_MODULES | MODULE_SERVERS | TENANT_MODULES | SERVICE_MODULES)


def test_live_modules_share_one_scope_server_modules_keep_theirs_the_rest_go_one_by_one() -> None:
    assert scope_of("tests/test_live_engine.py::test_rtsp_x") == scope_of("tests/test_live_source.py::test_y") == LIVE
    assert scope_of("tests/test_dashboard_streams.py::test_a[1]") == scope_of("tests/test_dashboard_streams.py::test_b") \
        == "tests/test_dashboard_streams.py"
    assert scope_of("tests/test_api.py::test_a[local]") == "tests/test_api.py::test_a[local]"
    assert scope_of("tests/test_dashboard_review.py::test_a") == scope_of("tests/test_dashboard_survey.py::test_b") \
        == TENANTS


def test_make_test_fast_leaves_out_the_heavy_tests_the_fixtures_mark() -> None:
    """The live-engine tests on a real RTSP server are marked heavy by their fixture alone."""
    makefile = (ROOT / "Makefile").read_text()
    markers = re.search(r'^FAST_MARKERS := (.+)$', makefile, re.MULTILINE)
    assert markers and "not heavy" in markers.group(1)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", markers.group(1),
         "tests/test_live_engine.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and not [line for line in collected if "::test_rtsp_" in line]


def test_every_module_using_a_module_scoped_server_is_kept_on_one_worker() -> None:
    """Spread over two workers, such a module would start its server on each of them, and again
    each time a worker came back to it from another module."""
    users = {f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*.py")
             if path.name != "test_test_tiers.py"
             and re.search(r"\b(shared_service|allinone_server)\b", path.read_text(encoding="utf-8"))}
    grouped = MODULE_SERVERS | TENANT_MODULES | SERVICE_MODULES
    assert users and users <= grouped, sorted(users - grouped)


def test_the_modules_sharing_the_tenants_server_are_the_ones_that_name_a_tenant() -> None:
    """A module naming a tenant but scheduled on its own would start the shared server again on
    the other worker; one in the group without a tenant would start a server of its own."""
    tenants = {f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*.py")
               if re.search(r"^ALLINONE_TENANT = ", path.read_text(encoding="utf-8"), re.MULTILINE)}
    assert tenants == TENANT_MODULES


def test_the_modules_sharing_the_session_service_are_grouped_on_one_worker() -> None:
    users = {f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*.py")
             if path.name != "test_test_tiers.py" and re.search(r"\bshared_service\b", path.read_text(encoding="utf-8"))}
    assert users == SERVICE_MODULES
    assert {scope_of(f"{path}::test_x") for path in SERVICE_MODULES} == {SERVICES}
