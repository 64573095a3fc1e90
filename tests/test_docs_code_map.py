"""docs/architecture.md's code map names every package folder and module, and nothing else.

The map is the page a newcomer reads first; a module added, moved or removed without its row
makes it lie. Each failure names the paths to add to (or remove from) the map.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PACKAGES = ("api", "core", "worker", "ml_engine", "allinone")
_ROW_PATH = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


def code_map_section(markdown: str) -> str:
    """The text from the ``## Code map`` heading to the next level-2 heading."""
    start = markdown.index("\n## Code map\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def mapped_paths(markdown: str) -> set[str]:
    """The paths in the first cell of the code map's rows (folders end with ``/``)."""
    return set(_ROW_PATH.findall(code_map_section(markdown)))


def tree_paths(root: Path) -> set[str]:
    """Every package folder (``core/backends/``) and every module but ``__init__.py``
    (``core/config.py``) under the service's packages."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            relative = path.relative_to(root)
            if "__pycache__" in relative.parts:
                continue
            found.add(relative.parent.as_posix() + "/")
            if path.name != "__init__.py":
                found.add(relative.as_posix())
    return found


def map_differences(mapped: set[str], tree: set[str]) -> list[str]:
    """One line per path the map lacks or names wrongly, sorted, ready to act on."""
    missing = [f"missing from the code map (add a row): {path}" for path in sorted(tree - mapped)]
    extra = [f"in the code map but not in the tree (remove or rename the row): {path}"
             for path in sorted(mapped - tree)]
    return missing + extra


def test_the_code_map_names_every_module_and_only_modules_that_exist() -> None:
    mapped = mapped_paths(ARCHITECTURE.read_text(encoding="utf-8"))
    tree = tree_paths(ROOT)
    assert "core/config.py" in tree and "ml_engine/live/" in tree  # the walk found the code
    differences = map_differences(mapped, tree)
    assert not differences, "docs/architecture.md, section Code map:\n" + "\n".join(differences)


def test_the_check_names_a_missing_module_and_a_stale_row(tmp_path: Path) -> None:
    for module in ("core/__init__.py", "core/config.py", "core/new_thing.py", "api/__init__.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("", encoding="utf-8")
    markdown = ("# A\n\n## Code map\n\n| path | for |\n| --- | --- |\n| `core/` | x |\n| `core/config.py` | y |\n"
                "| `api/` | z |\n| `ml_engine/tracking.py` | gone |\n\n## Next\n\n| `core/new_thing.py` | not the map |\n")
    differences = map_differences(mapped_paths(markdown), tree_paths(tmp_path))
    assert differences == [
        "missing from the code map (add a row): core/new_thing.py",
        "in the code map but not in the tree (remove or rename the row): ml_engine/tracking.py",
    ]
