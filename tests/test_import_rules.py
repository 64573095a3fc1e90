"""Which package may import which, read from the source with ``ast``.

Every import counts: at module level, inside functions, under ``if TYPE_CHECKING``. A new
import that breaks a rule fails here with the file, the line and the rule.

The rules:
- the API (``api/``) never imports torch, transformers, the engine, the worker or the
  all-in-one. Its doors into the engine are the torch-free media probes: ``ml_engine.video``
  (videos, PyAV) and ``ml_engine.image_probe`` with the reader it checks through,
  ``ml_engine.raster`` (images and rasters, rasterio: which is why
  rasterio is in requirements-api.txt), and ``ml_engine.telemetry`` (a drone's .SRT, stdlib
  only: the API checks a telemetry file's shape with the reader's own rules). The API image has
  no ML stack.
- ``core/`` is shared by both images and sits below the engine: it imports nothing of
  ``ml_engine`` (what both need, like the encoder's presets or the TILING grammar, lives in
  core), nor the ML stack, the worker or the all-in-one.
- the torch-free probe modules themselves never import torch, transformers or the rest
  of the engine's ML side.
- the engine's library modules (``ml_engine/`` but its CLI, ``__main__.py``) never import the
  API, the worker, the all-in-one or service settings. Of ``core`` they use only what is
  pure and settings-free: ``core.errors`` (the error tree), ``core.jobs`` (the job model:
  lines, zones), ``core.netpolicy`` (redact_url), ``core.outputs`` (output file names),
  ``core.tables`` (the CSV exports' formats) and ``core.tiling`` (the TILING grammar
  the API also validates with). So a notebook can use the engine
  with no service configured. The CLI may read settings for its defaults.
- the worker never imports the API (its image ships no ``api/``: what both publish, like the
  public job shape, lives in core) nor the all-in-one (the all-in-one imports it).
- a private name (a leading underscore) stays in its module: no module imports another's. What
  two modules share gets a public name, in a home both may import.
- one storage backend never imports the other: what both need lives beside
  ``core/backends/base.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ML_STACK = ("torch", "torchvision", "transformers", "supervision", "trackers")
# the engine modules the API (and core) may import: torch-free media probes
API_ENGINE_DOORS = ("ml_engine.video", "ml_engine.image_probe", "ml_engine.raster", "ml_engine.telemetry")
# the core modules the engine's library may import: pure, no settings
# core.netpolicy: the one redact_url the API, the worker and the engine all show URLs with (two
# copies drifted apart); it is pure (no settings: the policy's allowlist comes as an argument)
# core.tables: the CSV formats, written by the engine and converted by the API (windows.csv), stdlib only
# core.video_encoding: the encoder's presets, which the VIDEO_PRESET setting is checked against
ENGINE_CORE_MODULES = ("core.errors", "core.jobs", "core.netpolicy", "core.outputs", "core.tables", "core.tiling",
                       "core.video_encoding")
ENGINE_CLI = "ml_engine.__main__"
PROJECT = ("api", "core", "ml_engine", "worker", "allinone")  # a library's private names are its own business


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # the module imported, dotted (``from a import b`` is ``a.b`` when b is a module)
    name: str = ""  # ``from a import b``'s b when b is no module: a name defined in ``module``

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def imported(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module


def _is_module(dotted: str) -> bool:
    path = ROOT / Path(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[Import]:
    """Every import statement in the file, wherever it is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if _is_module(candidate):
                    yield Import(path, node.lineno, candidate)
                else:
                    yield Import(path, node.lineno, base, alias.name)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def violations(path: Path) -> Iterator[str]:
    """``file:line: rule (imports x)`` for each import of ``path`` that breaks a rule."""
    name = _module_name(path)
    seen = set()
    for found in imports_of(path):
        private = _private_part(found.imported) if _within(found.module, PROJECT) else None
        if private:
            yield (f"{found.where()}: a private name ({private}) is its own module's; give it a public name in a "
                   f"home both modules may import (imports {found.imported})")
        module = found.module
        if (found.line, module) in seen:  # ``from m import a, b``: one report
            continue
        seen.add((found.line, module))
        for rule in _rules_for(name):
            problem = rule(module)
            if problem:
                yield f"{found.where()}: {problem} (imports {module})"


def _private_part(dotted: str) -> str | None:
    """The first part of a dotted name with a leading underscore (dunders are public)."""
    return next((part for part in dotted.split(".") if part.startswith("_") and not part.startswith("__")), None)


def _api_rule(module: str) -> str | None:
    if _within(module, ML_STACK):
        return "the API and core never import the ML stack (their image has none)"
    if _within(module, ("worker", "allinone")):
        return "the API and core never import the worker or the all-in-one"
    if _within(module, ("ml_engine",)) and not _within(module, API_ENGINE_DOORS):
        return f"the API and core import the engine only through {', '.join(API_ENGINE_DOORS)} (torch-free)"
    return None


def _core_rule(module: str) -> str | None:
    if _within(module, ("ml_engine",)):
        return "core never imports the engine (it sits below it: what both need lives in core)"
    return _api_rule(module)


def _probe_rule(module: str) -> str | None:
    if _within(module, ML_STACK):
        return "a torch-free probe module never imports the ML stack"
    if _within(module, ("ml_engine",)) and not _within(module, API_ENGINE_DOORS):
        return "a torch-free probe module imports no other engine module"
    return None


def _engine_rule(module: str) -> str | None:
    if _within(module, ("api", "worker", "allinone")):
        return "the engine's library never imports the API, the worker or the all-in-one"
    if _within(module, ("core",)) and not _within(module, ENGINE_CORE_MODULES):
        return (f"the engine's library imports of core only {', '.join(ENGINE_CORE_MODULES)} "
                "(no settings: it must work from a notebook)")
    return None


def _engine_cli_rule(module: str) -> str | None:
    if _within(module, ("api", "worker", "allinone")):
        return "the engine's CLI never imports the API, the worker or the all-in-one"
    return None


def _worker_rule(module: str) -> str | None:
    if _within(module, ("allinone",)):
        return "the worker never imports the all-in-one (it is the other way round)"
    if _within(module, ("api",)):
        return "the worker never imports the API (its image ships none: what both need lives in core)"
    return None


def _backend_rule(own: str, other: str):
    def rule(module: str) -> str | None:
        if _within(module, (f"core.backends.{other}",)):
            return f"the {own} backend never imports the {other} one (shared helpers go beside base.py)"
        return None
    return rule


def _rules_for(name: str) -> list:
    rules = []
    if _within(name, ("api",)):
        rules.append(_api_rule)
    if _within(name, ("core",)):
        rules.append(_core_rule)
    if _within(name, API_ENGINE_DOORS):
        rules.append(_probe_rule)
    if _within(name, ("ml_engine",)):
        rules.append(_engine_cli_rule if name == ENGINE_CLI else _engine_rule)
    if _within(name, ("worker",)):
        rules.append(_worker_rule)
    if _within(name, ("core.backends.local",)):
        rules.append(_backend_rule("local", "azure"))
    if _within(name, ("core.backends.azure",)):
        rules.append(_backend_rule("azure", "local"))
    return rules


def project_files() -> list[Path]:
    return sorted(path for package in PROJECT for path in (ROOT / package).rglob("*.py"))


def test_the_project_keeps_its_import_rules() -> None:
    files = project_files()
    assert any(path.parts[-2:] == ("api", "main.py") for path in files)  # the walk found the code
    broken = [problem for path in files for problem in violations(path)]
    assert not broken, "import rules broken:\n" + "\n".join(broken)


def test_the_probe_the_api_imports_is_torch_free() -> None:
    """The exception the API rule makes must itself hold: no ML stack behind the door."""
    for door in API_ENGINE_DOORS:
        modules = {found.module for found in imports_of(ROOT / Path(*door.split(".")).with_suffix(".py"))}
        assert not [m for m in modules if _within(m, ML_STACK)], f"{door} imports the ML stack: {sorted(modules)}"


# --- the checker itself finds what it should ---------------------------------------------------


def _fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str, source: str) -> Path:
    """A file placed as if it were ``relative`` in the project (ROOT pointed at tmp_path)."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("api/routes/thing.py", "def f():\n    import torch\n", "api/routes/thing.py:2: the API and core never "
         "import the ML stack"),
        ("api/thing.py", "from ml_engine.pipeline import process_video\n", "api/thing.py:1: the API and core "
         "import the engine only through ml_engine.video"),
        ("api/thing.py", "from worker.service import Worker\n", "api/thing.py:1: the API and core never import "
         "the worker"),
        ("ml_engine/thing.py", "def f():\n    from core.config import Settings\n", "ml_engine/thing.py:2: "
         "the engine's library imports of core only"),
        ("ml_engine/thing.py", "from api import schemas\n", "ml_engine/thing.py:1: the engine's library never "
         "imports the API"),
        ("ml_engine/video.py", "import transformers\n", "ml_engine/video.py:1: a torch-free probe module never "
         "imports the ML stack"),
        ("core/backends/azure/thing.py", "from core.backends.local.jobs import decode_cursor\n",
         "core/backends/azure/thing.py:1: the azure backend never imports the local one"),
        ("worker/thing.py", "import allinone.__main__\n", "worker/thing.py:1: the worker never imports the "
         "all-in-one"),
        ("worker/thing.py", "from api.schemas import JobOut\n", "worker/thing.py:1: the worker never imports the API"),
        ("core/thing.py", "from ml_engine.video import X264_PRESETS\n", "core/thing.py:1: core never imports the "
         "engine"),
        ("api/routes/thing.py", "from api.routes.jobs import _visible_job\n", "api/routes/thing.py:1: a private "
         "name (_visible_job)"),
        ("ml_engine/thing.py", "def f():\n    from ml_engine.outputs import _write_json\n", "ml_engine/thing.py:2: "
         "a private name (_write_json)"),
        ("worker/thing.py", "from ml_engine import _private_module\n", "worker/thing.py:1: a private name "
         "(_private_module)"),
    ],
)
def test_a_broken_rule_is_named_with_its_file_and_line(tmp_path, monkeypatch, relative, source, expected) -> None:
    path = _fake_module(tmp_path, monkeypatch, relative, source)
    found = list(violations(path))
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("api/thing.py", "from ml_engine.video import probe\n"),
        ("ml_engine/thing.py", "from core.errors import InvalidInput\nfrom core.jobs import CountingLine\n"),
        ("ml_engine/__main__.py", "from core.config import Settings\n"),
        ("worker/thing.py", "from ml_engine.pipeline import process_video\nimport torch\n"),
        ("allinone/__main__.py", "from api.main import create_app\nfrom worker.service import Worker\n"),
        ("worker/thing.py", "from __future__ import annotations\nfrom core.public_job import public_job\n"),
        ("core/thing.py", "from core.video_encoding import X264_PRESETS\n"),
    ],
)
def test_an_allowed_import_passes(tmp_path, monkeypatch, relative, source) -> None:
    assert list(violations(_fake_module(tmp_path, monkeypatch, relative, source))) == []
