"""Every relative link in README.md and docs/*.md reaches a file, and every `#anchor` a heading of it
(GitHub's slugs: lower case, punctuation dropped, spaces to dashes, `-1`, `-2` for repeats)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(path):
        m = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_the_anchor_rules_match_githubs() -> None:
    page = ROOT / "docs" / "kubernetes.md"
    assert {"client-certificates-mutual-tls", "deploy-dev", "machine-metadata"} <= anchors(page)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(doc: Path) -> None:
    broken = []
    for url in LINK.findall("\n".join(_prose(doc))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", url):  # https:, mailto:
            continue
        path, _, fragment = url.partition("#")
        target = (doc.parent / path) if path else doc
        if not target.exists():
            broken.append(f"{url}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{url}: no heading with that anchor")
    assert broken == [], f"{doc.relative_to(ROOT)}: {broken}"
