"""Register-map templates: one XML file per meter family (DESIGN.md rule 7, protocol notes §6).

Built-in templates live in ``bridge/config/templates/`` (linked as ``mappings/templates/``) and are
validated against ``template.xsd``. Problems are reported all at once, each as ``file:line: message``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import cast

from lxml import etree

from bridge.config.model import Origin, RegisterDef, RegisterFormat, Template

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_XSD = Path(__file__).with_name("template.xsd")


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One problem in a template file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class TemplateError(ValueError):
    """A template file cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[TemplateProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownModelError(ValueError):
    """No built-in template covers a meter model."""


@functools.cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(TEMPLATE_XSD)))


def _parse(path: Path) -> etree._ElementTree:
    parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True)
    try:
        return etree.parse(str(path), parser)
    except OSError as exc:
        raise TemplateError([TemplateProblem(str(path), 0, f"cannot read template: {exc}")]) from exc
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 0
        raise TemplateError([TemplateProblem(str(path), line, f"not well-formed XML: {exc.msg}")]) from exc


def _schema_problems(path: Path, doc: etree._ElementTree) -> list[TemplateProblem]:
    schema = _schema()
    if schema.validate(doc):
        return []
    log = cast(Iterable[etree._LogEntry], schema.error_log)
    return [TemplateProblem(str(path), e.line, e.message) for e in log]


_TRUE = ("true", "1")
_NOT_NUMERIC = (RegisterFormat.ASCII.value, RegisterFormat.DATETIME.value)


def _rule_problems(path: Path, root: etree._Element) -> list[TemplateProblem]:
    """Rules the XSD cannot express, checked on the raw elements so all problems come at once."""
    problems = []
    for el in root.iter("register"):
        if el.get("format") not in _NOT_NUMERIC:
            continue
        for flag in ("energy", "writable"):
            if el.get(flag, "false").strip() in _TRUE:
                fmt = el.get("format")
                message = f'register {el.get("name")!r}: {flag}="true" needs a numeric format, not {fmt}'
                problems.append(TemplateProblem(str(path), _line(el), message))
    return problems


def _line(el: etree._Element) -> int:
    line = el.sourceline
    return line if isinstance(line, int) else 0


def _register(path: Path, el: etree._Element) -> RegisterDef:
    # The XSD has checked presence, types and defaults are filled in here.
    return RegisterDef(
        name=el.get("name", ""),
        number=int(el.get("number", "0")),
        fmt=RegisterFormat(el.get("format", "")),
        scale=float(el.get("scale", "1")),
        unit=el.get("unit", ""),
        description=el.get("description", ""),
        energy=el.get("energy", "false").strip() in _TRUE,
        writable=el.get("writable", "false").strip() in _TRUE,
        origin=Origin(str(path), _line(el)),
    )


def load_template(path: str | Path) -> Template:
    """Load and validate one template file; raises ``TemplateError`` listing every problem."""
    path = Path(path)
    doc = _parse(path)
    root = doc.getroot()
    problems = _schema_problems(path, doc) + _rule_problems(path, root)
    if problems:
        raise TemplateError(sorted(problems, key=lambda p: p.line))
    registers = [_register(path, el) for el in root.iter("register")]
    return Template(
        name=root.get("name", ""),
        models=tuple(root.get("models", "").split()),
        registers=MappingProxyType({r.name: r for r in registers}),
        origin=Origin(str(path), _line(root)),
    )


def load_template_dir(directory: Path) -> tuple[Template, ...]:
    """Every ``*.xml`` template of a directory, sorted by template name; names must be unique."""
    templates = sorted((load_template(p) for p in sorted(directory.glob("*.xml"))), key=lambda t: t.name)
    problems = [
        TemplateProblem(b.origin.file, b.origin.line, f"template name {b.name!r} is also used by {a.origin}")
        for a, b in zip(templates, templates[1:], strict=False)
        if a.name == b.name
    ]
    if problems:
        raise TemplateError(problems)
    return tuple(templates)


@functools.cache
def _builtin() -> tuple[Template, ...]:
    return load_template_dir(TEMPLATE_DIR)


def builtin_templates() -> dict[str, Template]:
    """The built-in templates by name (loaded once; a new dict each call)."""
    return {t.name: t for t in _builtin()}


def model_template(templates: Iterable[Template], model: str) -> str:
    """Name of the first template (by name) that lists ``model``.

    A site variant named after its base (``milur-3phase-r158``) sorts after the base, so adding
    one to the templates folder does not change what a model resolves to.
    """
    templates = tuple(templates)
    wanted = model.strip()
    for t in sorted(templates, key=lambda t: t.name):
        if wanted in t.models:
            return t.name
    known = ", ".join(sorted({m for t in templates for m in t.models}))
    raise UnknownModelError(f"no template for meter model {model!r} (known: {known})")


def template_for_model(model: str) -> str:
    """Name of the built-in template for a meter model (``"107"`` → ``"milur-1phase"``)."""
    return model_template(_builtin(), model)
