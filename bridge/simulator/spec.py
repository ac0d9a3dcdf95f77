"""Describing simulated meters and serving forms in text: the ``--meter`` option and spec files.

Meter: ``MODEL:ADDRESS`` then options ``key=value`` (comma-separated on the command line,
whitespace-separated in a file)::

    307:255
    107:49932,serial=012049932,password=010203040506,width=4
    305:17,energy-scale=0.001,firmware=123,clock=bcd

Options: ``serial`` (text), ``password`` (12 hex digits), ``levels`` (accepted access levels,
``0/1``), ``width`` (1 or 4; default by value), ``energy-scale`` (0.01 or 0.001), ``clock``
(``binary`` or ``bcd``), ``quirk`` (``on``/``off``, the 104 quirk; default on for 104),
``firmware``, ``model-text``, ``session-timeout`` (seconds), ``locked-error`` (``09``/``0D``),
``seed``.

Spec file (one item a line, ``#`` starts a comment; every meter shares one bus and every serving
form serves that bus)::

    meter 307:255 firmware=123 energy-scale=0.001
    meter 107:49932 password=010203040506
    pty baud=9600 link=/tmp/milur0 turnaround=0.02
    tcp 127.0.0.1:7000 imei=356938035643809
    dial 127.0.0.1:7001 imei=356938035643809 keepalive=30 wrap=on reconnect=on

A line saying just ``bus`` starts another bus with its own meters and forms (``load_specs``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import E_ACCESS_DENIED, E_BAD_PASSWORD, MODELS, SimulatedMeter
from bridge.simulator.pty import PtyLine
from bridge.simulator.serving import DialOutModem, TcpMeterServer

_BOOL = {"on": True, "yes": True, "true": True, "1": True, "off": False, "no": False,
         "false": False, "0": False}  # fmt: skip


class SpecError(ValueError):
    """A meter description or spec file line that cannot be understood."""


@dataclass(frozen=True, slots=True)
class FormSpec:
    """One serving form: ``pty``, ``tcp`` (server mode) or ``dial`` (client mode)."""

    kind: str
    host: str = "127.0.0.1"
    port: int = 0
    imei: str | None = None
    baudrate: int = 9600
    turnaround: float = 0.02
    link: str | None = None
    keepalive: float | None = None
    wrap: bool = False
    reconnect: bool = True


@dataclass(frozen=True, slots=True)
class SimulatorSpec:
    """Meters (one bus) and the forms that serve them."""

    meters: tuple[SimulatedMeter, ...]
    forms: tuple[FormSpec, ...]


def _options(items: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"expected key=value, got {item!r}")
        opts[key.strip().lower()] = value.strip()
    return opts


def _flag(key: str, value: str) -> bool:
    if value.lower() not in _BOOL:
        raise SpecError(f"{key} must be on or off, got {value!r}")
    return _BOOL[value.lower()]


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SpecError(f"{key} must be a number, got {value!r}") from None


def parse_meter(text: str, extra: list[str] | None = None) -> SimulatedMeter:
    """A meter from ``MODEL:ADDRESS[,key=value...]`` (plus ``extra`` key=value items)."""
    head, *items = [p for p in text.strip().split(",") if p]
    model, sep, address_text = head.partition(":")
    if not sep or model not in MODELS:
        raise SpecError(f"meter must be MODEL:ADDRESS with MODEL one of {', '.join(MODELS)}: {text!r}")
    try:
        address = int(address_text)
    except ValueError:
        raise SpecError(f"meter address must be a number: {text!r}") from None
    opts = _options(items + (extra or []))
    kwargs: dict[str, object] = {}
    for key, value in opts.items():
        if key == "serial":
            kwargs["serial_number"] = value
        elif key == "password":
            try:
                password = bytes.fromhex(value)
            except ValueError:
                password = b""
            if len(password) != 6:
                raise SpecError("password must be 12 hex digits (6 raw bytes)")
            kwargs["password"] = password
        elif key == "levels":
            kwargs["access_levels"] = tuple(int(_number(key, v)) for v in value.split("/"))
        elif key == "width":
            if value not in ("1", "4"):
                raise SpecError(f"width must be 1 or 4, got {value!r}")
            kwargs["address_width"] = int(value)
        elif key == "energy-scale":
            kwargs["energy_scale"] = _number(key, value)
        elif key == "clock":
            if value not in ("binary", "bcd"):
                raise SpecError(f"clock must be binary or bcd, got {value!r}")
            kwargs["clock_bcd"] = value == "bcd"
        elif key == "quirk":
            kwargs["wake_quirk"] = _flag(key, value)
        elif key in ("firmware", "model-text"):
            kwargs[key.replace("-", "_")] = value
        elif key == "session-timeout":
            kwargs["session_timeout"] = _number(key, value)
        elif key == "locked-error":
            codes = {"09": E_ACCESS_DENIED, "0d": E_BAD_PASSWORD}
            if value.lower() not in codes:
                raise SpecError(f"locked-error must be 09 or 0D, got {value!r}")
            kwargs["locked_error"] = codes[value.lower()]
        elif key == "seed":
            kwargs["seed"] = int(_number(key, value))
        else:
            raise SpecError(f"unknown meter option {key!r}")
    try:
        return SimulatedMeter(model, address, **kwargs)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``PORT`` alone means 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    try:
        return (host if sep and host else "127.0.0.1"), int(port)
    except ValueError:
        raise SpecError(f"expected HOST:PORT, got {text!r}") from None


def parse_form(kind: str, args: list[str]) -> FormSpec:
    """A serving form from its spec-file words (``tcp HOST:PORT imei=…`` etc.)."""
    positional = [a for a in args if "=" not in a]
    opts = _options([a for a in args if "=" in a])
    host, port = "127.0.0.1", 0
    if kind in ("tcp", "dial"):
        if len(positional) != 1:
            raise SpecError(f"{kind} needs HOST:PORT")
        host, port = parse_host_port(positional[0])
    elif kind != "pty" or positional:
        raise SpecError(f"unknown line {kind!r} (meter, pty, tcp or dial)")
    known = {"imei", "baud", "turnaround", "link", "keepalive", "wrap", "reconnect"}
    if unknown := set(opts) - known:
        raise SpecError(f"unknown {kind} option(s): {', '.join(sorted(unknown))}")
    if kind == "dial" and "imei" not in opts:
        raise SpecError("dial needs imei=<15 digits>")
    imei = opts.get("imei")
    if imei is not None and (len(imei) != 15 or not imei.isdigit()):
        raise SpecError(f"an IMEI is 15 digits, got {imei!r}")
    return FormSpec(
        kind=kind,
        host=host,
        port=port,
        imei=imei,
        baudrate=int(_number("baud", opts.get("baud", "9600"))),
        turnaround=_number("turnaround", opts.get("turnaround", "0.02")),
        link=opts.get("link"),
        keepalive=_number("keepalive", opts["keepalive"]) if "keepalive" in opts else None,
        wrap=_flag("wrap", opts.get("wrap", "off")),
        reconnect=_flag("reconnect", opts.get("reconnect", "on")),
    )


def _parse_section(
    path: str | Path, lines: list[tuple[int, str]], errors: list[str]
) -> SimulatorSpec | None:
    meters: list[SimulatedMeter] = []
    forms: list[FormSpec] = []
    first_error = len(errors)
    for number, raw in lines:
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        try:
            if words[0] == "meter" and len(words) >= 2:
                meters.append(parse_meter(words[1], words[2:]))
            else:
                forms.append(parse_form(words[0], words[1:]))
        except SpecError as exc:
            errors.append(f"{path}:{number}: {exc}")
    if not meters and len(errors) == first_error:
        at = f"{path}:{lines[0][0]}" if lines else str(path)
        errors.append(f"{at}: no meter lines")
    if len(errors) > first_error:
        return None
    return SimulatorSpec(tuple(meters), tuple(forms))


def load_specs(path: str | Path) -> list[SimulatorSpec]:
    """Read a spec file holding one or more buses, separated by lines saying ``bus``.

    Each bus has its own meters and serving forms (the demo runs an RS-485 line, a gateway and a
    dial-in module from one file). Errors carry ``file:line`` and are all reported at once.
    """
    text = Path(path).read_text(encoding="utf-8")
    sections: list[list[tuple[int, str]]] = [[]]
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.split("#", 1)[0].split() == ["bus"]:
            if any(line.split("#", 1)[0].strip() for _, line in sections[-1]):
                sections.append([])
            continue
        sections[-1].append((number, raw))
    errors: list[str] = []
    specs = [_parse_section(path, lines, errors) for lines in sections]
    if errors:
        raise SpecError("\n".join(errors))
    return [spec for spec in specs if spec is not None]


def load_spec(path: str | Path) -> SimulatorSpec:
    """Read a single-bus spec file; errors carry ``file:line`` and are all reported at once."""
    specs = load_specs(path)
    if len(specs) != 1:
        raise SpecError(f"{path}: {len(specs)} buses; use load_specs for a multi-bus file")
    return specs[0]


class RunningSimulator:
    """Serves a spec's bus through all its forms; ``await start()``, then ``await stop()``."""

    def __init__(self, spec: SimulatorSpec) -> None:
        try:
            self.bus = SimulatedBus(spec.meters)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        self.spec = spec
        self.forms: list[PtyLine | TcpMeterServer | DialOutModem] = []

    async def start(self) -> None:
        """Start every serving form (a failure stops the ones already started)."""
        try:
            for form in self.spec.forms:
                served = self._build(form)
                await served.start()
                self.forms.append(served)
        except BaseException:
            await self.stop()
            raise

    def _build(self, form: FormSpec) -> PtyLine | TcpMeterServer | DialOutModem:
        if form.kind == "pty":
            return PtyLine(self.bus, form.baudrate, turnaround=form.turnaround, link=form.link)
        if form.kind == "tcp":
            return TcpMeterServer(self.bus, form.host, form.port, imei=form.imei)
        assert form.imei is not None
        return DialOutModem(
            self.bus,
            form.host,
            form.port,
            form.imei,
            keepalive=form.keepalive,
            wrap=form.wrap,
            reconnect=form.reconnect,
        )

    async def stop(self) -> None:
        """Stop every form."""
        while self.forms:
            served = self.forms.pop()
            with contextlib.suppress(Exception):
                if isinstance(served, PtyLine):
                    await served.close()
                else:
                    await served.stop()
