"""The dashboard's files on their own (no browser): it loads nothing from another site, and its
vendored hls.js is the release package.json pins, with its licence beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "api" / "static"
VENDORED_HLS = STATIC / "vendor" / "hls.js" / "hls.light.min.mjs"
NPM_HLS = ROOT / "node_modules" / "hls.js"

# what makes a browser fetch something: src/href attributes, ES imports, CSS url()
FETCHING = {
    ".html": re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']"""),
    ".js": re.compile(r"""(?:\bfrom\s*|\bimport\s*\(\s*)["']([^"']+)["']"""),
    ".css": re.compile(r"""url\(\s*["']?([^"')]+)"""),
}


def test_the_dashboard_fetches_nothing_from_another_site():
    """Every script, style and import is the server's own: the dashboard works offline and on
    closed farm networks (a CDN would also see every user)."""
    seen = 0
    for path in STATIC.rglob("*"):
        pattern = FETCHING.get(path.suffix)
        if pattern is None or "vendor" in path.parts:
            continue
        for target in pattern.findall(path.read_text()):
            seen += 1
            assert not re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", target, re.IGNORECASE), (path, target)
    assert seen > 20  # the patterns do find the page's scripts, styles and imports


def test_the_vendored_hls_js_is_the_pinned_release():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["hls.js"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version: the vendored copy is that one"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/hls.js"]["version"] == pinned
    assert f'"{pinned}"' in VENDORED_HLS.read_text()  # hls.js carries its version as a string constant
    licence = (VENDORED_HLS.parent / "LICENSE").read_text()
    assert "Apache License" in licence and "Dailymotion" in licence
    if (NPM_HLS / "package.json").exists():  # after `npm ci`: byte for byte the package's file
        assert json.loads((NPM_HLS / "package.json").read_text())["version"] == pinned
        assert (NPM_HLS / "dist" / VENDORED_HLS.name).read_bytes() == VENDORED_HLS.read_bytes(), (
            "api/static/vendor/hls.js differs from node_modules: copy dist/hls.light.min.mjs and LICENSE again")


def test_the_player_module_imports_the_vendored_file():
    player = (STATIC / "js" / "player.js").read_text()
    imported = re.search(r"""import Hls from ["']([^"']+)["']""", player).group(1)
    assert (STATIC / "js" / imported).resolve() == VENDORED_HLS
