"""The docs point at what exists: every relative link (and its #anchor) and every repository path
they name (``tests/...``, ``highlight_logging/...``, ``benchmarks/...``) resolves, so a file moved
in a refactor cannot leave a dead reference behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from paths import ROOT

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
#: Written by a run, not committed (``make bench`` writes it beside the committed latest.md).
GENERATED = {"benchmarks/results/latest.json"}
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w/.])((?:tests|highlight_logging|benchmarks|examples|docs)/[\w./-]*\w)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = re.match(r"#+\s+(.*)", line)
        if fenced or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_paths_resolve(doc: Path) -> None:
    text = doc.read_text()
    bad = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, fragment = target.partition("#")
        full = (doc.parent / path).resolve() if path else doc
        if not full.exists() or (fragment and full.suffix == ".md" and fragment not in anchors(full)):
            bad.append(target)
    for match in PATH.finditer(text):
        path = match.group(1)
        if path not in GENERATED and not (ROOT / path).exists() and not list(ROOT.glob(path + "*")):
            bad.append(path)
    assert not bad, f"{doc.relative_to(ROOT)}: {bad}"
