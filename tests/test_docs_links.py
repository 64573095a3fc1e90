"""Every relative link in the documentation leads somewhere.

README.md, docs/*.md and the READMEs beside the code link to each other and into the
repository; moving a section or a file silently breaks those links. This checks every relative
markdown link (and image) in them: the file or folder must exist, and a `#anchor` into a
markdown file must name one of its headings, slugged the way GitHub renders them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "bench" / "README.md", ROOT / "deploy" / "k8s" / "README.md"]
    + list((ROOT / "docs").glob("*.md")) + list((ROOT / "docs" / "decisions").glob("*.md"))
)

_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose(markdown: str) -> str:
    """The text outside fenced blocks and code spans, where a link is a link."""
    return _CODE_SPAN.sub("code", _FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    return _LINK.findall(prose(markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation gone, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of a document's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown)):
        base = slug(heading)
        count = seen.get(base, 0)
        result.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return result


def broken_links(document: Path) -> list[str]:
    """Each relative link of a document that leads nowhere, with the reason."""
    problems = []
    for target in links(document.read_text(encoding="utf-8")):
        if _SCHEME.match(target):
            continue  # http(s), mailto: not checked here (no network)
        path_part, _, anchor = target.partition("#")
        destination = (document.parent / path_part).resolve() if path_part else document
        if not destination.exists():
            problems.append(f"{target}: {path_part} does not exist")
        elif (anchor and destination.suffix == ".md"
              and anchor not in anchors(destination.read_text(encoding="utf-8"))):
                problems.append(f"{target}: no heading #{anchor} in {path_part or document.name}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    assert document.exists()
    assert broken_links(document) == []


def test_the_docs_the_readme_promises_exist_and_are_linked() -> None:
    readme_links = set(links((ROOT / "README.md").read_text(encoding="utf-8")))
    for name in ("api", "architecture", "configuration", "deploy", "operations", "performance"):
        assert (ROOT / "docs" / f"{name}.md").exists()
        assert f"docs/{name}.md" in readme_links, f"README.md does not link docs/{name}.md"


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text(
        '# Other\n\n## What "loses nothing" means here\n\n## The pipeline (`ml_engine`)\n'
    )
    document = tmp_path / "index.md"
    document.write_text(
        "[fine](other.md#what-loses-nothing-means-here) [fine too](other.md#the-pipeline-ml_engine)\n"
        "[gone](missing.md) [no such heading](other.md#nowhere) [own](#index)\n"
        "`[in code](ignored.md)` [web](https://example.com/x)\n"
        "```\n[in a block](ignored-too.md)\n```\n# Index\n"
    )
    assert broken_links(document) == [
        "missing.md: missing.md does not exist",
        "other.md#nowhere: no heading #nowhere in other.md",
    ]


def test_slugs_follow_github() -> None:
    assert slug('What "loses nothing" means here') == "what-loses-nothing-means-here"
    assert slug("The pipeline (`ml_engine`)") == "the-pipeline-ml_engine"
    assert slug("docker compose (GPU host)") == "docker-compose-gpu-host"
    assert anchors("## Webhooks\n## Webhooks\n") == {"webhooks", "webhooks-1"}
