"""The documentation: every relative link and #anchor resolves, every Makefile target is named
as `make <target>` somewhere in the docs, and the README stays a front page (at most 250 lines).

Reads files only; writes nothing but its own temporary files.
"""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers import REPO_ROOT, markdown_tables

README_MAX_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# A rule `name:` or `a b:` at the start of a line, not an assignment (`:=`, `::=`).
MAKE_RULE = re.compile(r"^([^\s#:=][^:=#]*?)\s*::?(?!=)")


def doc_files(root: Path) -> list[Path]:
    """README.md, docs/*.md, tests/README.md, recipes/README.md (those that exist)."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")),
             root / "tests" / "README.md", root / "recipes" / "README.md"]
    return [f for f in files if f.is_file()]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(line)
    return lines


def link_targets(text: str) -> list[str]:
    """Targets of inline links, images and reference definitions, outside code."""
    targets = []
    for line in prose_lines(text):
        ref = REFERENCE_LINK.match(line)
        if ref:
            targets.append(ref.group(1))
            continue
        line = INLINE_CODE.sub("", line)
        targets += [m.group(1) for m in INLINE_LINK.finditer(line)]
    return targets


def slugify(heading: str) -> str:
    """GitHub's anchor of a heading: its text without markup, lowercase, punctuation other
    than '-' and '_' dropped, spaces turned into '-'."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text, duplicates numbered as GitHub does (-1, -2)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(text):
        m = HEADING.match(line)
        if not m:
            continue
        slug = slugify(m.group(2))
        if slug in seen:
            seen[slug] += 1
            out.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            out.add(slug)
    return out


def broken_links(root: Path, files: list[Path]) -> list[str]:
    """'file: target (why)' for every relative link that does not resolve."""
    problems = []
    for doc in files:
        text = doc.read_text(encoding="utf-8")
        for target in link_targets(text):
            if SCHEME.match(target) or target.startswith("//"):
                continue  # http(s):, mailto: ... are not checked (no network in the tests)
            path_part, _, anchor = target.partition("#")
            path = (doc.parent / unquote(path_part)).resolve() if path_part else doc.resolve()
            where = f"{doc.relative_to(root)}: {target}"
            if not path.exists():
                problems.append(f"{where} (no such file)")
                continue
            if anchor and path.suffix == ".md" and path.is_file():
                if unquote(anchor).lower() not in anchors(path.read_text(encoding="utf-8")):
                    problems.append(f"{where} (no heading with anchor #{anchor} in {path.name})")
    return problems


def make_targets(makefile_text: str) -> list[str]:
    """Targets of the Makefile's rules, without special (.PHONY) or computed ($(STAMP)) ones."""
    targets = []
    for line in makefile_text.splitlines():
        if line.startswith(("\t", " ")):
            continue  # a recipe line
        m = MAKE_RULE.match(line)
        if not m:
            continue
        for name in m.group(1).split():
            if name.startswith(".") or "$" in name or "%" in name:
                continue
            if name not in targets:
                targets.append(name)
    return targets


def undocumented_targets(targets: list[str], texts: list[str]) -> list[str]:
    """The targets that no text names as `make <target>` (`make demo` is not `make demo-tune`)."""
    joined = "\n".join(texts)
    return [t for t in targets if not re.search(rf"(?<![\w-])make {re.escape(t)}(?![\w-])", joined)]


# --- the repository's docs ---------------------------------------------------------------

def test_every_relative_link_and_anchor_resolves():
    files = doc_files(REPO_ROOT)
    assert REPO_ROOT / "README.md" in files and len(files) > 3
    assert sum(len(link_targets(f.read_text(encoding="utf-8"))) for f in files) > 20  # the check sees links
    assert broken_links(REPO_ROOT, files) == []


def test_every_make_target_is_named_in_the_docs():
    targets = make_targets((REPO_ROOT / "Makefile").read_text(encoding="utf-8"))
    assert {"train", "test", "eval", "data", "sweep", "install"} <= set(targets)
    texts = [f.read_text(encoding="utf-8") for f in doc_files(REPO_ROOT)]
    assert undocumented_targets(targets, texts) == []


def test_the_readme_is_a_front_page():
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_the_readme_links_every_docs_page():
    linked = {Path(t.partition("#")[0]).name for t in link_targets((REPO_ROOT / "README.md").read_text(encoding="utf-8"))}
    pages = {p.name for p in (REPO_ROOT / "docs").glob("*.md")}
    assert pages - linked == set()


# --- the checks themselves can fail --------------------------------------------------------

def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "fig.png").write_bytes(b"")
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## When does it help? (`make study`)\n\n![fig](../demo/fig.png)\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Title\n\n"
        "[ok](docs/page.md) [ok anchor](docs/page.md#when-does-it-help-make-study) [self](#title)\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#no-such-heading) ![img](demo/nope.png)\n"
        "[web](https://example.com/x) `[in code](docs/also-missing.md)`\n\n"
        "```\n[in a fence](docs/fenced-missing.md)\n# not a heading\n```\n",
        encoding="utf-8")
    problems = broken_links(tmp_path, doc_files(tmp_path))
    assert problems == [
        "README.md: docs/missing.md (no such file)",
        "README.md: docs/page.md#no-such-heading (no heading with anchor #no-such-heading in page.md)",
        "README.md: demo/nope.png (no such file)",
    ]
    # the image of docs/page.md is resolved from docs/, not from the root
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n![fig](demo/fig.png)\n", encoding="utf-8")
    assert "docs/page.md: demo/fig.png (no such file)" in broken_links(tmp_path, doc_files(tmp_path))


@pytest.mark.parametrize("heading, slug", [
    ("Indicators and float rounding (where we differ from the authors' code)",
     "indicators-and-float-rounding-where-we-differ-from-the-authors-code"),
    ("When does Uni-DPO help? (`make study`)", "when-does-uni-dpo-help-make-study"),
    ("Packed attention without the `[L x L]` mask (`attn_implementation: packed_varlen`)",
     "packed-attention-without-the-l-x-l-mask-attn_implementation-packed_varlen"),
    ("Metrics, outputs, resuming", "metrics-outputs-resuming"),
    ("Preference world / demo", "preference-world--demo"),
])
def test_anchors_follow_githubs_slug_rules(heading, slug):
    assert slugify(heading) == slug


def test_duplicate_headings_are_numbered():
    assert anchors("# A\n## Notes\n## Notes\n### Notes\n") == {"a", "notes", "notes-1", "notes-2"}


def test_an_undocumented_make_target_is_reported():
    makefile = (".PHONY: help train demo demo-tune\nPY := .venv/bin/python\nSTAMP := x\n"
                "help:\n\techo\n$(STAMP): setup.py\n\ttouch $@\ntrain: $(STAMP)\n\t$(PY) -m x\n"
                "demo: $(STAMP)\n\techo\ndemo-tune: $(STAMP)\n\techo\n")
    targets = make_targets(makefile)
    assert targets == ["help", "train", "demo", "demo-tune"]
    assert undocumented_targets(targets, ["`make help`, make train", "make demo-tune"]) == ["demo"]


def quoted_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each table outside code: its header cells and its rows' cells (the separator skipped)."""
    return [(table[0], table[2:]) for table in markdown_tables("\n".join(prose_lines(text)))]


def test_the_demo_numbers_quoted_in_the_docs_are_those_of_demo_results_md():
    """README.md and docs/world.md quote `make demo`'s tables (a `method` column): every cell
    equals demo/results.md's for that method and column (bold aside: a quoted subset may bold
    otherwise)."""
    plain = lambda cell: cell.replace("**", "")  # noqa: E731
    source = {}
    for head, rows in quoted_tables((REPO_ROOT / "demo" / "results.md").read_text(encoding="utf-8")):
        if head[0] == "method":
            source.update({(row[0], col): plain(cell) for row in rows for col, cell in zip(head[1:], row[1:])})
    assert len(source) >= 10 * 6, "demo/results.md lost its tables"
    checked = 0
    for doc in (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "world.md"):
        for head, rows in quoted_tables(doc.read_text(encoding="utf-8")):
            if head[0] != "method":
                continue
            for row in rows:
                for col, cell in zip(head[1:], row[1:]):
                    assert plain(cell) == source.get((row[0], col)), f"{doc.name}: {row[0]} {col}"
                    checked += 1
    assert checked >= 4 * 4 + 12 * 6  # README's comparison and docs/world.md's two tables
