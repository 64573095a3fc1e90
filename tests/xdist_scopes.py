"""Which tests one pytest-xdist worker runs together (``make test``: ``-n 2 --dist loadgroup``).

xdist's own ``loadgroup`` reads ``xdist_group`` marks, but with pytest 9.2 and xdist 3.8 those
marks are silently ignored (pytest-xdist#1386: the group rides on a node id pytest no longer
lets it change). So ``conftest.py`` gives xdist this scheduler instead, with the groups named
here from the node id alone, which the scheduler (in the controller, which collects nothing) has:

- the live-stream modules, paced in real time, run one test at a time on one worker, so that
  two streams (each an encoder, a decoder and a detector) never compete for the CPU their
  assertions time;
- a module whose module-scoped fixture starts a server (the all-in-one with Chromium, the API
  of the HTTP boundary table, the API and worker of ``shared_service``) stays on one worker, so
  the server starts once; so does each group of modules sharing a session-scoped server (the
  dashboard modules on ``tenants_server``'s all-in-one, one tenant each; the modules of
  ``shared_service``);
- every other test goes to whichever worker is free, one by one, as ``--dist load`` does.

Any test is still safe on any worker: each worker is its own session with its own temp directory
(session fixtures such as Azurite run once per worker), and every server binds a free port.
"""

from __future__ import annotations

import pytest

LIVE = "live"
LIVE_MODULES = frozenset({"tests/test_live_engine.py", "tests/test_live_source.py", "tests/test_live_gallery.py"})
MODULE_SERVERS = frozenset({"tests/test_dashboard_streams.py",
                            "tests/test_http_boundary.py", "tests/test_api_docs.py",
                            "tests/test_openapi_contract.py"})
# modules sharing a session-scoped server, each group on one worker so that it starts once
TENANTS = "tenants"  # tests/fixtures_server.py's tenants_server: one all-in-one, a tenant per module
TENANT_MODULES = frozenset({"tests/test_dashboard_gallery.py", "tests/test_dashboard_review.py",
                            "tests/test_dashboard_survey.py", "tests/test_dashboard_drawing.py",
                            "tests/test_dashboard.py"})
SERVICES = "services"  # tests/fixtures_service.py's shared_service: one API and worker per backend
SERVICE_MODULES = frozenset({"tests/test_service_e2e.py", "tests/test_stills_service.py",
                             "tests/test_telemetry_e2e.py"})
SHARED_SERVER_GROUPS = {TENANTS: TENANT_MODULES, SERVICES: SERVICE_MODULES}


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: tests with the same scope run on one worker, in order."""
    path = nodeid.split("::", 1)[0]
    if path in LIVE_MODULES:
        return LIVE
    for group, modules in SHARED_SERVER_GROUPS.items():
        if path in modules:
            return group
    if path in MODULE_SERVERS:
        return path
    return nodeid


def make_scheduler(config: pytest.Config, log: object) -> object:
    """xdist's scope scheduler, scoped by ``scope_of`` (imported here: xdist is a dev dependency)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return GroupScheduling(config, log)  # type: ignore[arg-type]  # log: xdist's Producer
