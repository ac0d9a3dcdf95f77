"""docs/mapping.md mentions every element and attribute that mapping.xsd declares."""

from __future__ import annotations

import re
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
XS = "{http://www.w3.org/2001/XMLSchema}"


def _declared() -> tuple[set[str], set[str]]:
    doc = etree.parse(str(ROOT / "bridge" / "config" / "mapping.xsd"))
    elements = {str(e.get("name")) for e in doc.iter(f"{XS}element")}
    attributes = {str(a.get("name")) for a in doc.iter(f"{XS}attribute")}
    return elements, attributes


def test_the_schema_declares_something() -> None:
    elements, attributes = _declared()
    assert {"mapping", "channel", "meter", "tag", "poll-group"} <= elements
    assert len(attributes) > 50


def test_every_element_is_documented() -> None:
    text = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    elements, _ = _declared()
    missing = sorted(e for e in elements if f"<{e}" not in text)
    assert not missing, f"elements missing from docs/mapping.md: {missing}"


def test_every_attribute_is_documented() -> None:
    text = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    _, attributes = _declared()
    # an attribute counts as documented when it appears as `name` (a table cell or inline code)
    # or as name="..." in an example
    missing = sorted(
        a for a in attributes if not re.search(rf"`{re.escape(a)}`|[\s<]{re.escape(a)}=\"", text)
    )
    assert not missing, f"attributes missing from docs/mapping.md: {missing}"
