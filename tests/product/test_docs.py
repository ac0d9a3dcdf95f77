"""The user docs stay true: the index lists every page and command, links resolve, and the example
mapping of getting-started.md is a valid mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.cli import _command_modules
from bridge.config.loader import load_mapping

DOCS = Path(__file__).resolve().parents[2] / "docs"
USER_PAGES = ("index.md", "getting-started.md", "troubleshooting.md")
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def test_the_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    linked = {target for target, _ in LINK.findall(index)}
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages - linked == set(), "pages missing from docs/index.md"


def test_the_index_lists_every_command() -> None:
    index = (DOCS / "index.md").read_text()
    listed = set(re.findall(r"^\| `([\w-]+)", index, re.MULTILINE))
    assert listed == {str(m.NAME) for m in _command_modules()}


@pytest.mark.parametrize("name", USER_PAGES)
def test_links_and_anchors_resolve(name: str) -> None:
    for target, anchor in LINK.findall((DOCS / name).read_text()):
        if target.startswith("http"):
            continue
        page = DOCS / (target or name)
        assert page.is_file(), f"{name}: link to missing {target}"
        if anchor:
            assert anchor in anchors(page), f"{name}: no heading for #{anchor} in {page.name}"


def test_the_first_mapping_of_getting_started_is_valid(tmp_path: Path) -> None:
    text = (DOCS / "getting-started.md").read_text()
    xml = re.search(r"```xml\n(<mapping.*?</mapping>)\n```", text, re.DOTALL)
    assert xml, "no mapping example"
    path = tmp_path / "workshop.xml"
    path.write_text(xml.group(1))
    mapping = load_mapping(path)
    summary = re.search(r"tags +(\d+)", text)
    assert summary and int(summary.group(1)) == len(mapping.tags)


@pytest.mark.parametrize("name", ["getting-started.md", "troubleshooting.md"])
def test_commands_named_in_the_docs_exist(name: str) -> None:
    commands = {str(m.NAME) for m in _command_modules()}
    text = (DOCS / name).read_text()
    named = set(re.findall(r"(?:^|`)milur-bridge ([a-z][\w-]+)", text, re.MULTILINE))
    assert named, "no command found: the pattern is broken"
    assert named - commands - {"is"} == set()  # "milur-bridge is running …": the run banner
