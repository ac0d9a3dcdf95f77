"""Turns libxml2's XSD validation messages into plain English sentences.

libxml2 says ``Element 'meter', attribute 'level': '300' is not a valid value of the atomic type
'xs:unsignedByte'.``; an integrator should read ``<meter level="300">: must be a whole number from 0
to 255``. Messages we do not recognise keep their text, without the ``Element '...'`` prefix. Values
of password attributes are never repeated.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: plain descriptions of the schema's value types (mapping.xsd simple types and xs: built-ins)
TYPE_WORDS: dict[str, str] = {
    "xs:boolean": "true or false",
    "xs:int": "a whole number",
    "xs:double": "a number",
    "xs:positiveInteger": "a whole number above 0",
    "xs:nonNegativeInteger": "a whole number, 0 or more",
    "xs:unsignedInt": "a whole number from 0 to 4294967295",
    "xs:unsignedByte": "a whole number from 0 to 255",
    "SecondsType": "a number of seconds above 0",
    "NonNegativeSecondsType": "a number of seconds, 0 or more",
    "PositiveNumberType": "a number above 0",
    "PortType": "a TCP port number from 0 to 65535",
    "UnitIdType": "a Modbus unit id from 1 to 247",
    "AddressType": "a Modbus register address from 0 to 65535",
    "BytesizeType": "a byte size from 5 to 8",
    "WireWidthType": "1 or 4",
    "NameType": "a name of letters, digits, '_' and '-' (at most 64, no spaces or dots)",
    "NameList": "a list of names separated by spaces",
    "NonEmptyNameList": "a list of one or more names separated by spaces",
    "SecurityPolicyList": "a list of one or more security policies separated by spaces",
    "IntervalType": "an interval such as 500ms, 30s, 5m or 1h",
    "ModelType": "a meter model such as 107 or 307",
}

#: what a pattern facet means, by the pattern text in mapping.xsd
PATTERN_WORDS: dict[str, str] = {
    r"[A-Za-z0-9_][A-Za-z0-9_\-]*": TYPE_WORDS["NameType"],
    r"[0-9]+(\.[0-9]+)?(ms|s|m|h)?": TYPE_WORDS["IntervalType"],
    r"[A-Za-z0-9_\-]+": TYPE_WORDS["ModelType"],
}

_PREFIX = re.compile(r"^Element '(?P<el>[^']+)'(?:, attribute '(?P<attr>[^']+)')?: (?P<rest>.*)$", re.S)
_ATOMIC = re.compile(
    r"^'(?P<value>.*)' is not a valid value of the (?:atomic|list|union) type '(?P<type>[^']+)'\.?$", re.S
)
_ENUM = re.compile(
    r"^\[facet 'enumeration'\] The value '(?P<value>.*)' is not an element of the set \{(?P<set>.*)\}\.?$",
    re.S,
)
_PATTERN = re.compile(
    r"^\[facet 'pattern'\] The value '(?P<value>.*)' is not accepted by the pattern '(?P<pattern>.*)'\.?$",
    re.S,
)
_FACET = re.compile(r"^\[facet '(?P<facet>\w+)'\] The value '(?P<value>.*?)' (?P<rest>.*)$", re.S)
_NOT_ALLOWED = re.compile(r"^The attribute '(?P<name>[^']+)' is not allowed\.?$")
_REQUIRED = re.compile(r"^The attribute '(?P<name>[^']+)' is required but missing\.?$")
_UNEXPECTED = re.compile(
    r"^This element is not expected\.(?: Expected is(?: one of)? \( (?P<expected>[^)]*) \)\.)?$"
)
_MISSING_CHILD = re.compile(
    r"^Missing child element\(s\)\. Expected is(?: one of)? \( (?P<expected>[^)]*) \)\.?$"
)
_BOUND = re.compile(r"\('([^']*)'\)")
_FACET_WORDS = {
    "maxInclusive": "at most",
    "minInclusive": "at least",
    "maxExclusive": "below",
    "minExclusive": "above",
    "maxLength": "at most this many characters:",
    "minLength": "at least this many items or characters:",
}
_TEXT = "Character content other than whitespace is not allowed"


@dataclass(frozen=True, slots=True)
class PlainMessage:
    """A rewritten message and what it is about (for de-duplication)."""

    subject: tuple[str, str]  # (element, attribute or "")
    text: str
    about_value: bool  # a message about the attribute's value (type or facet)
    from_type: bool  # the type description (preferred over a facet message)


def _elements(expected: str) -> str:
    return ", ".join(f"<{e.strip()}>" for e in expected.split(",") if e.strip())


def _secret(attr: str) -> bool:
    return "password" in attr


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SchemaMessages:
    """Rewrites messages; ``attributes``/``elements`` are the names the schema knows (for hints)."""

    def __init__(self, attributes: Iterable[str], elements: Iterable[str]) -> None:
        """Remember the known names for 'did you mean' hints."""
        self.attributes = frozenset(attributes)
        self.elements = frozenset(elements)

    def rewrite(self, message: str) -> PlainMessage:
        """One libxml2 message → a plain sentence."""
        m = _PREFIX.match(message.strip())
        if not m:
            return PlainMessage(("", ""), self._root(message.strip()), False, False)
        el, attr, rest = m["el"], m["attr"] or "", m["rest"].strip()
        if attr:
            return self._attribute(el, attr, rest)
        return PlainMessage((el, ""), self._element(el, rest), False, False)

    def _root(self, message: str) -> str:
        if "No matching global declaration" in message:
            return "the root element must be <mapping>"
        return message

    def _attribute(self, el: str, attr: str, rest: str) -> PlainMessage:
        def shown(value: str) -> str:
            return f'<{el} {attr}="***">' if _secret(attr) else f'<{el} {attr}="{value}">'

        if _NOT_ALLOWED.match(rest):
            text = f"<{el}>: unknown attribute {attr!r}{_suggest(attr, self.attributes)}"
            return PlainMessage((el, attr), text, False, False)
        if m := _ATOMIC.match(rest):
            words = TYPE_WORDS.get(m["type"], f"a value of type {m['type']}")
            return PlainMessage((el, attr), f"{shown(m['value'])}: must be {words}", True, True)
        if m := _ENUM.match(rest):
            choices = ", ".join(c.strip().strip("'") for c in m["set"].split(","))
            text = f"{shown(m['value'])}: must be one of {choices}"
            return PlainMessage((el, attr), text, True, True)
        if m := _PATTERN.match(rest):
            words = PATTERN_WORDS.get(m["pattern"], f"text matching {m['pattern']}")
            return PlainMessage((el, attr), f"{shown(m['value'])}: must be {words}", True, False)
        if m := _FACET.match(rest):
            bound = _BOUND.search(m["rest"])
            limit = _FACET_WORDS.get(m["facet"])
            if bound and limit:
                text = f"{shown(m['value'])}: must be {limit} {bound[1]}"
            else:
                text = f"{shown(m['value'])}: {m['rest'].rstrip('.')}"
            return PlainMessage((el, attr), text, True, False)
        return PlainMessage((el, attr), f"<{el}> attribute {attr!r}: {rest}", False, False)

    def _element(self, el: str, rest: str) -> str:
        if m := _REQUIRED.match(rest):
            return f"<{el}>: attribute {m['name']!r} is required"
        if m := _UNEXPECTED.match(rest):
            hint = "" if m["expected"] else _suggest(el, self.elements - {el})
            where = f"; expected {_elements(m['expected'])}" if m["expected"] else ""
            return f"<{el}> is not allowed here{where}{hint}"
        if m := _MISSING_CHILD.match(rest):
            return f"<{el}> needs a child element: one of {_elements(m['expected'])}"
        if "No matching global declaration" in rest:
            return f"the root element must be <mapping>, not <{el}>"
        if rest.startswith(_TEXT):
            return f"<{el}> must not contain text"
        return f"<{el}>: {rest}"


def pick(messages: Iterable[PlainMessage]) -> list[PlainMessage]:
    """Keep one value message per attribute (the type description when there is one)."""
    chosen: list[PlainMessage] = []
    by_subject: dict[tuple[str, str], int] = {}
    for msg in messages:
        if not msg.about_value:
            chosen.append(msg)
            continue
        index = by_subject.get(msg.subject)
        if index is None:
            by_subject[msg.subject] = len(chosen)
            chosen.append(msg)
        elif msg.from_type and not chosen[index].from_type:
            chosen[index] = msg
    return chosen
