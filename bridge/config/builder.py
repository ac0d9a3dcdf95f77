"""Builds the typed model from a schema-valid mapping document (element → frozen dataclass).

The schema has already checked shapes and value types, so conversions here cannot fail, except
for what the schema leaves open on purpose: passwords (never echoed), finite numbers, durations,
the meter of a top-level tag, and the ``<tags>`` shorthand. Those problems are collected in
``errors``; the cross-checks (``checks.py``) run on the result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from lxml import etree

from bridge.config.errors import ConfigError
from bridge.config.model import (
    AddressWidth,
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    IdentifyMethod,
    ListenerConfig,
    MeterConfig,
    ModbusPoint,
    ModbusTable,
    ModbusType,
    Origin,
    Parity,
    PollGroup,
    Secret,
    SerialSettings,
    TagConfig,
    TcpClientSettings,
    WordOrder,
)

T = TypeVar("T")
Element = etree._Element

_HEX12 = re.compile(r"[0-9A-Fa-f]{12}")
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DEFAULT_PASSWORD = Secret(b"\xff" * 6)
WAKE_BYTE_MODELS = frozenset({"104"})  # protocol notes §1: the 104 ignores a request after 8 bytes


def parse_duration(text: str) -> float:
    """``"30s"`` → 30.0, ``"5m"`` → 300.0, ``"500ms"`` → 0.5, ``"2"`` → 2.0 (seconds)."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not an interval such as 500ms, 30s, 5m or 1h")
    return float(m["number"]) * _UNIT_SECONDS[m["unit"]]


def line_of(el: Element) -> int:
    """Source line of an element (0 when unknown)."""
    line = el.sourceline
    return line if isinstance(line, int) else 0


_MARKUP = re.compile(
    rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>|<(?P<tag>[A-Za-z_])",
    re.S,
)


def start_lines(source: bytes, root: Element) -> dict[Element, int]:
    """Line of each element's ``<`` (libxml2's ``sourceline`` is where a multi-line start tag ends).

    Start tags are found in document order, skipping comments, CDATA, processing instructions and
    the doctype; if their count does not match the tree, the map is empty and callers fall back
    to ``sourceline``.
    """
    elements = [el for el in root.iter() if isinstance(el.tag, str)]
    starts: list[int] = []
    line, last = 1, 0
    for m in _MARKUP.finditer(source):
        if m["tag"] is None:
            continue
        line += source.count(b"\n", last, m.start())
        last = m.start()
        starts.append(line)
    if len(starts) != len(elements):
        return {}
    return dict(zip(elements, starts, strict=True))


def is_true(text: str | None) -> bool:
    """XSD boolean → bool."""
    return text in ("true", "1")


@dataclass(slots=True)
class MeterTags:
    """The ``<tags>`` shorthand of one meter, kept until the poll groups are known."""

    meter: str
    all: bool
    registers: tuple[str, ...]
    origin: Origin


@dataclass(slots=True)
class Built:
    """What the builder produced: model objects and raw facts the cross-checks need."""

    listeners: list[ListenerConfig] = field(default_factory=list)
    channels: list[ChannelConfig] = field(default_factory=list)
    meters: list[MeterConfig] = field(default_factory=list)
    poll_groups: list[PollGroup] = field(default_factory=list)
    tags: list[TagConfig | MeterTags] = field(default_factory=list)  # document order
    meters_all: set[str] = field(default_factory=set)  # poll groups that said meters="all"
    export_points: list[tuple[str, Origin]] = field(default_factory=list)  # meter, where


class MappingBuilder:
    """Reads one schema-valid document; ``errors`` lists what the schema could not catch."""

    def __init__(self, path: Path, lines: dict[Element, int] | None = None) -> None:
        """``path`` names the file in every origin and error; ``lines`` from ``start_lines``."""
        self.file = str(path)
        self.lines = lines or {}
        self.meter_names: dict[str, MeterConfig] = {}
        self.base = path.absolute().parent
        self.errors: list[ConfigError] = []
        self.built = Built()

    # ------------------------------------------------------------------ small readers
    def line(self, el: Element) -> int:
        """Line where an element's start tag begins."""
        return self.lines.get(el) or line_of(el)

    def origin(self, el: Element) -> Origin:
        """Origin of an element."""
        return Origin(self.file, self.line(el))

    def error(self, el: Element, message: str) -> None:
        """Record a problem at an element."""
        self.errors.append(ConfigError(self.file, self.line(el), message))

    def get(self, el: Element, attr: str, conv: Callable[[str], T], default: T) -> T:
        """Attribute converted, or ``default`` when absent."""
        text = el.get(attr)
        return default if text is None else conv(text.strip())

    def number(self, el: Element, attr: str, default: float) -> float:
        """A finite float attribute (the schema lets NaN and INF through)."""
        value = self.get(el, attr, float, default)
        if not math.isfinite(value):
            self.error(el, f'<{el.tag} {attr}="{el.get(attr)}">: must be a finite number')
            return default
        return value

    def optional_number(self, el: Element, attr: str) -> float | None:
        """A finite float attribute or None."""
        return None if el.get(attr) is None else self.number(el, attr, 0.0)

    def flag(self, el: Element, attr: str, default: bool) -> bool:
        """A boolean attribute."""
        return self.get(el, attr, is_true, default)

    def path(self, el: Element, attr: str, default: str) -> str:
        """A file or folder attribute; relative paths are taken from the mapping's folder."""
        text = el.get(attr)
        if text is None:
            return default
        p = Path(text.strip())
        return str(p if p.is_absolute() else self.base / p)

    def optional_path(self, el: Element, attr: str) -> str | None:
        """A path attribute or None."""
        return None if el.get(attr) is None else self.path(el, attr, "")

    # ------------------------------------------------------------------ listeners and channels
    def listener(self, el: Element) -> None:
        """``<listener>``."""
        self.built.listeners.append(
            ListenerConfig(
                name=el.get("name", ""),
                host=self.get(el, "host", str, "0.0.0.0"),
                port=self.get(el, "port", int, 7001),
                method=self.get(el, "identify", IdentifyMethod, IdentifyMethod.IMEI),
                identify_timeout=self.number(el, "identify-timeout", 15.0),
                identify_address=self.get(el, "identify-address", int, 255),
                identify_address_width=self.get(el, "identify-address-width", int, 1),
                max_unidentified=self.get(el, "max-unidentified", int, 1000),
                max_connections=self.get(el, "max-connections", int, 20000),
                origin=self.origin(el),
            )
        )

    def channel(self, el: Element) -> None:
        """``<channel>`` with its transport element and meters."""
        name = el.get("name", "")
        serial = tcp = dial_in = None
        kind = ChannelKind.SERIAL
        for child in el:
            if child.tag == "serial":
                kind, serial = ChannelKind.SERIAL, self.serial(child)
            elif child.tag == "tcp":
                kind, tcp = ChannelKind.TCP_CLIENT, self.tcp(child)
            elif child.tag == "dial-in":
                kind = ChannelKind.DIAL_IN
                dial_in = DialInSettings(child.get("listener", ""), child.get("identity", "").strip())
        self.built.channels.append(
            ChannelConfig(
                name=name,
                kind=kind,
                serial=serial,
                tcp=tcp,
                dial_in=dial_in,
                response_timeout=self.number(el, "response-timeout", 1.0),
                frame_gap=self.number(el, "frame-gap", 0.005),
                retries=self.get(el, "retries", int, 1),
                reconnect_min=self.number(el, "reconnect-min", 1.0),
                reconnect_max=self.number(el, "reconnect-max", 60.0),
                group=el.get("group", ""),
                description=el.get("description", ""),
                origin=self.origin(el),
            )
        )
        for child in el.iterchildren("meter"):
            self.meter(child, name)

    def serial(self, el: Element) -> SerialSettings:
        """``<serial>``."""
        return SerialSettings(
            port=el.get("port", "").strip(),
            baudrate=self.get(el, "baudrate", int, 9600),
            bytesize=self.get(el, "bytesize", int, 8),
            parity=self.get(el, "parity", Parity, Parity.NONE),
            stopbits=self.get(el, "stopbits", float, 1.0),
        )

    def tcp(self, el: Element) -> TcpClientSettings:
        """``<tcp>``."""
        return TcpClientSettings(
            host=el.get("host", "").strip(),
            port=int(el.get("port", "0")),
            connect_timeout=self.number(el, "connect-timeout", 10.0),
            keepalive=self.flag(el, "keepalive", True),
        )

    # ------------------------------------------------------------------ meters and tags
    def password(self, el: Element) -> Secret:
        """A meter password: 12 hex digits → 6 raw bytes (protocol notes §3). Never echoed."""
        text = el.get("password")
        if text is None:
            return DEFAULT_PASSWORD
        if not _HEX12.fullmatch(text.strip()):
            self.error(
                el,
                f"meter {el.get('name')!r}: password must be 12 hex digits (6 bytes), "
                "e.g. FFFFFFFFFFFF; the value is not shown",
            )
            return DEFAULT_PASSWORD
        return Secret(bytes.fromhex(text.strip()))

    def meter(self, el: Element, channel: str) -> None:
        """``<meter>`` with its scale overrides, tags and ``<tags>`` shorthand."""
        name = el.get("name", "")
        first = self.meter_names.get(name)
        if first is not None:
            # reported once here; the duplicate and its tags are left out of further checks
            self.error(el, f"meter name {name!r} is already used at line {first.origin.line}")
            return
        model = el.get("model", "").strip()
        scales: dict[str, float] = {}
        for s in el.iterchildren("scale"):
            register = s.get("register", "")
            if register in scales:
                self.error(s, f"meter {name!r}: register {register!r} has two <scale> overrides")
            scales[register] = self.number(s, "value", 1.0)
        meter = MeterConfig(
            name=name,
            channel=channel,
            model=model,
            template=el.get("template", ""),  # resolved from the model by the checks
            address=int(el.get("address", "0")),
            address_width=self.get(el, "address-width", AddressWidth, AddressWidth.AUTO),
            access_level=self.get(el, "level", int, 1),
            password=self.password(el),
            backup_channel=el.get("backup-channel"),
            wake_byte=self.flag(el, "wake-byte", model in WAKE_BYTE_MODELS),
            scale_overrides=MappingProxyType(scales),
            energy_scale=self.optional_number(el, "energy-scale"),
            bad_after=self.number(el, "bad-after", 300.0),
            modbus_unit_id=self.get(el, "unit-id", int, None),
            description=el.get("description", ""),
            origin=self.origin(el),
        )
        self.meter_names[name] = meter
        self.built.meters.append(meter)
        for child in el.iterchildren("tag", "tags"):
            if child.tag == "tag":
                self.tag(child, name)
            else:
                self.shorthand(child, name)

    def shorthand(self, el: Element, meter: str) -> None:
        """``<tags all="true"/>`` or ``<tags registers="a b"/>``."""
        all_ = self.flag(el, "all", False)
        registers = tuple((el.get("registers") or "").split())
        if all_ == bool(registers):
            self.error(el, f'meter {meter!r}: <tags> needs either all="true" or registers="..."')
            return
        self.built.tags.append(MeterTags(meter, all_, registers, self.origin(el)))

    def tag(self, el: Element, meter: str | None) -> None:
        """``<tag>`` inside a meter (``meter`` given) or at the top level (its own attribute)."""
        named = el.get("meter")
        if meter is not None and named is not None and named != meter:
            self.error(el, f"tag inside meter {meter!r} names another meter {named!r}")
        meter = meter or named
        if meter is None:
            self.error(el, "a <tag> outside a <meter> needs a meter attribute")
            return
        register = el.get("register", "")
        point = None
        for m in el.iterchildren("modbus"):
            point = ModbusPoint(
                unit_id=self.get(m, "unit-id", int, None),
                table=self.get(m, "table", ModbusTable, None),
                address=self.get(m, "address", int, None),
                data_type=self.get(m, "type", ModbusType, None),
                word_order=self.get(m, "word-order", WordOrder, None),
                scale=self.optional_number(m, "scale"),
            )
        self.built.tags.append(
            TagConfig(
                name=el.get("name", register),
                meter=meter,
                register=register,
                scale=self.number(el, "scale", 1.0),
                offset=self.number(el, "offset", 0.0),
                unit=el.get("unit"),
                description=el.get("description", ""),
                opcua_node_id=el.get("node-id"),
                modbus=point,
                store=self.get(el, "store", is_true, None),
                origin=self.origin(el),
            )
        )

    # ------------------------------------------------------------------ poll groups
    def poll_group(self, el: Element) -> None:
        """``<poll-group>``: exactly one of interval and cron; meters "all" is expanded later."""
        name = el.get("name", "")
        interval_text, cron = el.get("interval"), el.get("cron")
        if (interval_text is None) == (cron is None):
            self.error(el, f"poll group {name!r}: give exactly one of interval and cron")
        interval = None
        if interval_text is not None:
            interval = parse_duration(interval_text)
            if interval <= 0:
                self.error(el, f"poll group {name!r}: interval {interval_text!r} must be above 0")
        meters = tuple(el.get("meters", "").split())
        if "all" in meters:
            if len(meters) > 1:
                self.error(el, f'poll group {name!r}: meters="all" cannot be combined with names')
            self.built.meters_all.add(name)
            meters = ()
        group = PollGroup(
            name=name,
            meters=meters,
            registers=tuple(el.get("registers", "").split()),
            interval=interval,
            cron=cron.strip() if cron is not None else None,
            store=self.get(el, "store", is_true, None),
            origin=self.origin(el),
        )
        self.built.poll_groups.append(group)
