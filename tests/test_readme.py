"""The README's promises a newcomer acts on: its make targets exist, its curl session calls routes
the API serves with the methods it uses, and it stays short (the rest belongs in docs/)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from starlette.routing import Match, Mount

from api.main import create_app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
API = "http://127.0.0.1:8000"
README_MAX_LINES = 160  # "what it is, what you need, two commands, a curl session, where next"


def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def curl_calls(block: str) -> list[tuple[str, str]]:
    """(method, path) of each curl command on our API in a shell block; continuations joined."""
    calls = []
    for line in block.replace("\\\n", " ").splitlines():
        if not line.startswith("curl "):
            continue
        words = shlex.split(line, comments=True)
        url = next((word for word in words if word.startswith(API)), None)
        if url is None:
            continue  # e.g. the PUT to the upload URL the API handed out
        calls.append((_method(words), url.removeprefix(API).split("?", 1)[0]))
    return calls


def _method(words: list[str]) -> str:
    if "-X" in words:
        return words[words.index("-X") + 1]
    return "POST" if {"-F", "-d"} & set(words) else "GET"


def served(method: str, path: str) -> bool:
    """Whether one of the API's routes answers this method and path, by Starlette's own matching
    (the dashboard's static mount at / would match anything, so it does not count)."""
    scope = {
        "type": "http",
        "method": method,
        "path": path.replace("$JOB", "0193-some-job-id"),
        "root_path": "",
    }
    routes = [route for route in create_app().routes if not isinstance(route, Mount)]
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def test_the_two_commands_and_the_other_entry_points_are_make_targets() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    documented = set(re.findall(r"`make ([a-z-]+)`", README))
    documented |= {line.split()[1] for line in code_blocks(README, "bash")[0].splitlines()}
    assert {"run", "test"} <= documented
    assert documented <= targets, f"README names make targets the Makefile lacks: {documented - targets}"


def test_the_curl_session_calls_routes_the_api_serves() -> None:
    session = next(block for block in code_blocks(README, "bash") if "curl" in block)
    calls = curl_calls(session)
    assert ("POST", "/jobs") in calls and ("GET", "/jobs/$JOB") in calls and ("DELETE", "/jobs/$JOB") in calls
    assert len(calls) >= 12
    missing = [f"{method} {path}" for method, path in calls if not served(method, path)]
    assert missing == [], f"the README's curl session calls routes the API does not serve: {missing}"


def test_the_route_check_refuses_a_route_the_api_does_not_serve() -> None:
    assert served("GET", "/jobs/$JOB/result")
    assert not served("GET", "/jobs/$JOB/resultz")  # (/results is served: an images job's results.jsonl)
    assert not served("PATCH", "/jobs/$JOB")


def test_the_readme_stays_a_first_screen() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move details to docs/"
