"""Loads a site mapping: lxml parse → XSD validation → typed model → cross-checks.

``load_mapping(path)`` returns a frozen ``SiteMapping`` or raises ``MappingError`` with every
problem found, each printed as ``file:line: message`` (DESIGN.md rule 6). Schema problems are
reported on their own (cross-checks of a document of the wrong shape would only add noise); once
the shape is right, every cross-check problem is reported at once, including those of the Modbus
placement (``bridge/config/modbus_map.py``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import cast

from lxml import etree

from bridge.config import sections
from bridge.config.builder import Element, MappingBuilder, start_lines
from bridge.config.checks import CrossChecks, port_clashes
from bridge.config.errors import ConfigError, MappingError
from bridge.config.model import Origin, SiteMapping, Template
from bridge.config.schema_messages import PlainMessage, SchemaMessages, pick

__all__ = ["MAPPING_XSD", "ConfigError", "MappingError", "load_mapping"]

log = logging.getLogger(__name__)

MAPPING_XSD = Path(__file__).with_name("mapping.xsd")
SECTIONS = ("opcua", "modbus", "status", "storage", "export", "simulator", "archives")
_XS = "{http://www.w3.org/2001/XMLSchema}"


@functools.cache
def _schema() -> tuple[etree.XMLSchema, SchemaMessages]:
    doc = etree.parse(str(MAPPING_XSD))
    attributes = {str(a.get("name")) for a in doc.iter(f"{_XS}attribute")}
    elements = {str(e.get("name")) for e in doc.iter(f"{_XS}element")}
    return etree.XMLSchema(doc), SchemaMessages(attributes, elements)


def _parse(path: Path) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    if not path.is_file():
        raise MappingError([ConfigError(str(path), 0, "the mapping file does not exist (or is not a file)")])
    try:
        return etree.parse(str(path), parser)
    except OSError as exc:
        raise MappingError([ConfigError(str(path), 0, f"cannot read the mapping: {exc}")]) from exc
    except etree.XMLSyntaxError as exc:
        # libxml2 reports the first fatal error; what follows it is mostly its echo
        message = re.sub(r", line \d+, column \d+$", "", exc.msg or "syntax error")
        error = ConfigError(str(path), exc.lineno or 0, f"not well-formed XML: {message}")
        raise MappingError([error]) from exc


def _entry_line(doc: etree._ElementTree, entry: etree._LogEntry, lines: dict[Element, int]) -> int:
    """The start line of the element an entry is about (libxml2 gives the end of its start tag)."""
    try:
        found = doc.xpath(entry.path) if entry.path else []
    except etree.XPathError:
        found = []
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return int(lines.get(found[0], entry.line))
    return int(entry.line)


def _validate(path: Path, doc: etree._ElementTree, lines: dict[Element, int]) -> None:
    schema, messages = _schema()
    if schema.validate(doc):
        return
    by_line: dict[int, list[PlainMessage]] = {}
    for entry in cast(Iterable[etree._LogEntry], schema.error_log):
        line = _entry_line(doc, entry, lines)
        by_line.setdefault(line, []).append(messages.rewrite(entry.message))
    raise MappingError(
        ConfigError(str(path), line, m.text) for line, msgs in by_line.items() for m in pick(msgs)
    )


def _templates() -> dict[str, Template]:
    from bridge.config.templates import builtin_templates

    return builtin_templates()


def _modbus_errors(mapping: SiteMapping) -> list[ConfigError]:
    # Imported lazily: the Modbus placement module is optional for the loader (docs/architecture.md).
    try:
        from bridge.config.modbus_map import check_modbus_map
    except ImportError:
        log.debug("bridge.config.modbus_map is not available; Modbus placement not checked")
        return []
    return list(check_modbus_map(mapping))


def _build(
    path: Path, root: etree._Element, lines: dict[Element, int]
) -> tuple[SiteMapping, list[ConfigError]]:
    b = MappingBuilder(path, lines)
    settings: dict[str, object] = {}
    first_line: dict[str, int] = {}
    builders = {
        "opcua": sections.opcua,
        "modbus": sections.modbus,
        "status": sections.status,
        "storage": sections.storage,
        "export": sections.export,
        "simulator": sections.simulator,
        "archives": sections.archives,
    }
    for el in root.iterchildren(tag=etree.Element):
        tag = str(el.tag)
        if tag in builders:
            if tag in first_line:
                b.error(el, f"<{tag}> appears twice (first at line {first_line[tag]}); merge them")
                continue
            first_line[tag] = b.line(el)
            settings[tag] = builders[tag](b, el)
        elif tag == "listener":
            b.listener(el)
        elif tag == "channel":
            b.channel(el)
        elif tag == "poll-group":
            b.poll_group(el)
        elif tag == "tag":
            b.tag(el, None)
    templates = _templates()
    checks = CrossChecks(str(path), b.built, templates)
    checks.run()
    mapping = SiteMapping(
        source=str(path),
        templates=MappingProxyType(templates),
        listeners=tuple(b.built.listeners),
        channels=tuple(b.built.channels),
        meters=tuple(checks.meters),
        poll_groups=tuple(checks.poll_groups),
        tags=tuple(checks.tags),
        **settings,  # type: ignore[arg-type]  # keys are SiteMapping field names
    )
    clashes = port_clashes(mapping, {k: Origin(str(path), v) for k, v in first_line.items()})
    known = {m.name for m in mapping.meters}
    unknown = [n for n in mapping.archives.meters if n not in known]
    if unknown:  # <archives meters="..."> names meters defined anywhere in the file
        line = first_line.get("archives", 0)
        clashes.append(ConfigError(str(path), line, f"archives: no meter named {', '.join(unknown)}"))
    return mapping, b.errors + checks.errors + clashes


def load_mapping(path: str | Path) -> SiteMapping:
    """Parse, validate and check a mapping file; raises ``MappingError`` listing every problem."""
    path = Path(path)
    doc = _parse(path)
    lines = start_lines(path.read_bytes(), doc.getroot())
    _validate(path, doc, lines)
    mapping, errors = _build(path, doc.getroot(), lines)
    if not errors:
        errors = _modbus_errors(mapping)
    else:
        try:
            errors += _modbus_errors(mapping)
        except Exception:  # noqa: BLE001  # a broken mapping may trip it; its errors are reported
            log.debug("Modbus placement not checked: the mapping has other errors", exc_info=True)
    if errors:
        raise MappingError(errors)
    return mapping
