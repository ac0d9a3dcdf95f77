"""Cross-checks of a mapping: everything that involves more than one element.

They run on what ``MappingBuilder`` produced and also finish the model: a meter's template is
resolved from its model, ``meters="all"`` is expanded, and the ``<tags>`` shorthand becomes tags.

How poll groups and tags relate (docs/mapping.md, "Poll groups and tags"): poll groups say which
registers of which meters are read and how often; tags give those registers names on OPC UA and
Modbus. A tag's register must be read by a poll group of its meter, and every register a poll
group reads on a meter must have at least one tag (``<tags all="true"/>`` binds them all).
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from bridge.config.builder import Built, MeterTags
from bridge.config.errors import ConfigError
from bridge.config.model import (
    AddressWidth,
    ChannelKind,
    IdentifyMethod,
    MeterConfig,
    Origin,
    PollGroup,
    SiteMapping,
    TagConfig,
    Template,
)

_IMEI = re.compile(r"[0-9]{15}")
_CRON_FIELDS = (  # name, low, high, names (APScheduler's crontab fields)
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 6, ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
)
_CRON_PART = re.compile(r"(?P<range>\*|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>[0-9]+))?")


def cron_problem(expr: str) -> str | None:
    """Why a 5-field crontab expression is invalid, or None (``*/5 * * * *``, ``0 8-18 * * mon-fri``)."""
    fields = expr.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"cron {expr!r} must have 5 fields (minute hour day month weekday), not {len(fields)}"
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            m = _CRON_PART.fullmatch(part)
            if not m or (m["step"] is not None and int(m["step"]) == 0):
                return f"cron {expr!r}: {what} field {text!r} is not understood"
            for value in (m["a"], m["b"]):
                if value is None:
                    continue
                number = names.index(value.lower()) + low if value.lower() in names else None
                if number is None and value.isdigit():
                    number = int(value)
                if number is None or not low <= number <= high:
                    return f"cron {expr!r}: {what} {value!r} is outside {low}..{high}"
    return None


def _endpoint_port(endpoint: str) -> tuple[str, int] | None:
    parsed = urlsplit(endpoint)
    try:
        port = parsed.port
    except ValueError:
        return None
    return (parsed.hostname or "", port if port is not None else 4840)


def port_clashes(mapping: SiteMapping, sections: Mapping[str, Origin]) -> list[ConfigError]:
    """Servers of one mapping (listeners, OPC UA, Modbus, status) must not share a TCP port.

    ``sections`` gives the origin of each settings section found in the file; servers left at
    their defaults are checked too and reported at the ``<mapping>`` element (line 1 at worst).
    """
    anywhere = Origin(mapping.source, 1)
    servers: list[tuple[str, str, int, Origin]] = [
        (f"listener {x.name!r}", x.host, x.port, x.origin) for x in mapping.listeners
    ]
    if mapping.opcua.enabled and (hp := _endpoint_port(mapping.opcua.endpoint)):
        servers.append(("the OPC UA server", *hp, sections.get("opcua", anywhere)))
    if mapping.modbus.enabled:
        servers.append(("the Modbus server", mapping.modbus.host, mapping.modbus.port, mapping.modbus.origin))
    if mapping.status.enabled:
        status = mapping.status
        servers.append(("the status page", status.host, status.port, sections.get("status", anywhere)))
    errors: list[ConfigError] = []
    wildcard = {"", "0.0.0.0", "::"}
    for i, (what, host, port, origin) in enumerate(servers):
        for other, other_host, other_port, _ in servers[:i]:
            same_host = host == other_host or host in wildcard or other_host in wildcard
            if port != 0 and port == other_port and same_host:
                line = origin if origin.line else anywhere
                errors.append(ConfigError(line.file, line.line, f"{what} uses port {port}, like {other}"))
                break
    return errors


class CrossChecks:
    """Runs every cross-check; ``errors`` collects the problems, in no particular order."""

    def __init__(self, file: str, built: Built, templates: Mapping[str, Template]) -> None:
        """Check ``built`` (from ``file``) against the known ``templates``."""
        self.file = file
        self.built = built
        self.templates = templates
        self.errors: list[ConfigError] = []
        self.meters: list[MeterConfig] = []
        self.poll_groups: list[PollGroup] = []
        self.tags: list[TagConfig] = []
        self.addresses: dict[tuple[str, int], MeterConfig] = {}  # (channel, address) → first meter

    def error(self, origin: Origin, message: str) -> None:
        """Record a problem."""
        self.errors.append(ConfigError(origin.file, origin.line, message))

    def run(self) -> None:
        """All checks; the finished lists land in ``meters``, ``poll_groups`` and ``tags``."""
        b = self.built
        self.unique("listener", ((x.name, x.origin) for x in b.listeners))
        self.unique("channel", ((x.name, x.origin) for x in b.channels))
        self.unique("poll group", ((x.name, x.origin) for x in b.poll_groups))
        self.channel_names = {c.name for c in b.channels}
        self.channels()
        self.meters = [self.meter(m) for m in b.meters]
        self.poll_groups = [self.poll_group(g) for g in b.poll_groups]
        self.tags = self.expand_tags()
        self.check_tags()
        self.check_export_points()

    def unique(self, what: str, items: Iterable[tuple[str, Origin]]) -> None:
        """Names of one kind are unique."""
        first: dict[str, Origin] = {}
        for name, origin in items:
            if name in first:
                self.error(origin, f"{what} name {name!r} is already used at line {first[name].line}")
            else:
                first[name] = origin

    # ------------------------------------------------------------------ channels and listeners
    def channels(self) -> None:
        """Dial-in channels name a listener, and an identity of the listener's form, once."""
        listeners = {x.name: x for x in self.built.listeners}
        seen: dict[tuple[str, str], str] = {}
        for c in self.built.channels:
            if c.reconnect_min > c.reconnect_max:
                self.error(c.origin, f"channel {c.name!r}: reconnect-min is above reconnect-max")
            if c.kind is not ChannelKind.DIAL_IN or c.dial_in is None:
                continue
            d = c.dial_in
            listener = listeners.get(d.listener)
            if listener is None:
                known = ", ".join(sorted(listeners)) or "none declared"
                self.error(c.origin, f"channel {c.name!r}: no <listener> named {d.listener!r} ({known})")
                continue
            if (d.listener, d.identity) in seen:
                self.error(
                    c.origin,
                    f"channel {c.name!r}: identity {d.identity!r} on listener {d.listener!r} is "
                    f"already used by channel {seen[d.listener, d.identity]!r}",
                )
            seen[d.listener, d.identity] = c.name
            if listener.method is IdentifyMethod.IMEI and not _IMEI.fullmatch(d.identity):
                self.error(c.origin, f"channel {c.name!r}: identity {d.identity!r} is not a 15-digit IMEI")
            if listener.method is IdentifyMethod.PEER_ADDRESS:
                try:
                    ipaddress.ip_address(d.identity)
                except ValueError:
                    self.error(c.origin, f"channel {c.name!r}: identity {d.identity!r} is not an IP address")

    # ------------------------------------------------------------------ meters
    def meter(self, m: MeterConfig) -> MeterConfig:
        """Template, address, backup channel and scale overrides of one meter."""
        from bridge.config.templates import UnknownModelError, template_for_model

        template = m.template
        if template and template not in self.templates:
            known = ", ".join(sorted(self.templates))
            self.error(m.origin, f"meter {m.name!r}: unknown template {template!r} (known: {known})")
        elif not template:
            try:
                template = template_for_model(m.model)
            except UnknownModelError:
                models = ", ".join(sorted({x for t in self.templates.values() for x in t.models}))
                self.error(
                    m.origin,
                    f"meter {m.name!r}: no template for model {m.model!r} (known models: {models}); "
                    "check the model or name a template",
                )
        if m.address_width is AddressWidth.ONE and m.address > 255:
            self.error(m.origin, f"meter {m.name!r}: address {m.address} does not fit address-width 1")
        if m.backup_channel is not None:
            if m.backup_channel == m.channel:
                self.error(m.origin, f"meter {m.name!r}: backup-channel is its own channel {m.channel!r}")
            elif m.backup_channel not in self.channel_names:
                self.error(
                    m.origin, f"meter {m.name!r}: backup-channel {m.backup_channel!r} is not a channel"
                )
        other = self.addresses.setdefault((m.channel, m.address), m)
        if other is not m:
            self.error(
                m.origin,
                f"meter {m.name!r}: address {m.address} is already used by meter {other.name!r} "
                f"on channel {m.channel!r} (line {other.origin.line})",
            )
        for register in m.scale_overrides:
            self.known_register(m.origin, f"meter {m.name!r}: <scale>", template, register)
        return replace(m, template=template)

    def known_register(self, origin: Origin, what: str, template: str, register: str) -> bool:
        """True if ``register`` is in ``template``; an unknown template was reported already."""
        t = self.templates.get(template)
        if t is None or register in t.registers:
            return t is not None
        self.error(origin, f"{what}: register {register!r} is not in template {template!r}")
        return False

    # ------------------------------------------------------------------ poll groups
    def poll_group(self, g: PollGroup) -> PollGroup:
        """Meters exist ("all" expanded), registers exist for each meter, cron is valid."""
        if g.cron is not None and (problem := cron_problem(g.cron)):
            self.error(g.origin, f"poll group {g.name!r}: {problem}")
        meters = {m.name: m for m in self.meters}
        names = tuple(meters) if g.name in self.built.meters_all else g.meters
        for name in names:
            m = meters.get(name)
            if m is None:
                self.error(g.origin, f"poll group {g.name!r}: no meter named {name!r}")
                continue
            for register in g.registers:
                self.known_register(g.origin, f"poll group {g.name!r}, meter {name!r}", m.template, register)
        if not names:
            self.error(g.origin, f"poll group {g.name!r} has no meters")
        return replace(g, meters=names)

    def polled(self) -> dict[str, dict[str, PollGroup]]:
        """Meter → register → first poll group that reads it."""
        result: dict[str, dict[str, PollGroup]] = defaultdict(dict)
        for g in self.poll_groups:
            for meter in g.meters:
                for register in g.registers:
                    result[meter].setdefault(register, g)
        return result

    # ------------------------------------------------------------------ tags
    def expand_tags(self) -> list[TagConfig]:
        """Tags in document order, with the ``<tags>`` shorthand turned into tags."""
        polled = self.polled()
        meters = {m.name: m for m in self.meters}
        explicit = {(t.meter, t.register) for t in self.built.tags if isinstance(t, TagConfig)}
        tags: list[TagConfig] = []
        for item in self.built.tags:
            if isinstance(item, TagConfig):
                tags.append(item)
                continue
            tags.extend(self.shorthand(item, meters[item.meter], polled.get(item.meter, {}), explicit))
        return tags

    def shorthand(
        self,
        s: MeterTags,
        meter: MeterConfig,
        polled: Mapping[str, PollGroup],
        explicit: set[tuple[str, str]],
    ) -> list[TagConfig]:
        """Tags named after registers: listed ones, or every polled register without a tag."""
        if s.all:
            order = self.templates[meter.template].registers if meter.template in self.templates else {}
            registers = [r for r in order if r in polled and (meter.name, r) not in explicit]
        else:
            registers = list(s.registers)
        return [TagConfig(name=r, meter=meter.name, register=r, origin=s.origin) for r in registers]

    def check_tags(self) -> None:
        """Tags name a meter and a polled register; names unique per meter; polled registers tagged."""
        meters = {m.name: m for m in self.meters}
        polled = self.polled()
        seen: dict[tuple[str, str], Origin] = {}
        tagged: set[tuple[str, str]] = set()
        for t in self.tags:
            if (t.meter, t.name) in seen:
                line = seen[t.meter, t.name].line
                self.error(t.origin, f"tag {t.key!r} is already declared at line {line}")
            seen.setdefault((t.meter, t.name), t.origin)
            m = meters.get(t.meter)
            if m is None:
                self.error(t.origin, f"tag {t.name!r}: no meter named {t.meter!r}")
                continue
            tagged.add((t.meter, t.register))
            if not self.known_register(t.origin, f"tag {t.key!r}", m.template, t.register):
                continue
            if t.register not in polled.get(t.meter, {}):
                self.error(
                    t.origin,
                    f"tag {t.key!r}: register {t.register!r} of meter {t.meter!r} is read by no "
                    "poll group; add it to a <poll-group>",
                )
        for m in self.meters:
            registers = polled.get(m.name)
            if not registers:
                self.error(m.origin, f"meter {m.name!r} is in no poll group, so it is never read")
                continue
            missing = [r for r in registers if (m.name, r) not in tagged and self.known(m, r)]
            if missing:
                self.error(
                    m.origin,
                    f"meter {m.name!r}: polled registers without a tag: {', '.join(missing)}; "
                    'add <tags all="true"/> or <tag register="..."/>',
                )

    def known(self, meter: MeterConfig, register: str) -> bool:
        """True if the meter's template has the register."""
        t = self.templates.get(meter.template)
        return t is not None and register in t.registers

    def check_export_points(self) -> None:
        """Measuring points name meters."""
        names = {m.name for m in self.meters}
        for meter, origin in self.built.export_points:
            if meter not in names:
                self.error(origin, f"export point: no meter named {meter!r}")
