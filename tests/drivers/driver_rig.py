"""Shared set-up for the driver tests: a simulated bus behind a real TCP server, a real client."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from types import MappingProxyType

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    RegisterDef,
    RegisterFormat,
    Secret,
    TcpClientSettings,
    Template,
)
from bridge.config.templates import builtin_templates, template_for_model
from bridge.drivers.link import Link
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.transport.tcp_client import TcpClientTransport

#: a register the driver's template has and the simulated meter does not (error 02)
UNKNOWN_TO_METER = RegisterDef("not_in_meter", 201, RegisterFormat.U16, 1.0)


def template(model: str = "107", *extra: RegisterDef) -> Template:
    base = builtin_templates()[template_for_model(model)]
    registers = dict(base.registers)
    registers.update({r.name: r for r in extra})
    return dataclasses.replace(base, registers=MappingProxyType(registers))


def meter_config(
    address: int, model: str = "107", password: bytes = b"\xff" * 6, **kw: object
) -> MeterConfig:
    return MeterConfig(
        f"m{address}",
        "ch",
        model,
        template_for_model(model),
        address,
        password=Secret(password),
        **kw,  # type: ignore[arg-type]
    )


def tcp_channel(port: int, **kw: object) -> ChannelConfig:
    opts: dict[str, object] = {"response_timeout": 0.3, "retries": 1, "frame_gap": 0.001, **kw}
    tcp = TcpClientSettings("127.0.0.1", port, connect_timeout=2.0)
    return ChannelConfig("ch", ChannelKind.TCP_CLIENT, tcp=tcp, **opts)  # type: ignore[arg-type]


@dataclasses.dataclass
class TcpRig:
    bus: SimulatedBus
    server: TcpMeterServer
    transport: TcpClientTransport
    link: Link


@contextlib.asynccontextmanager
async def tcp_rig(*meters: SimulatedMeter, **channel_kw: object) -> AsyncIterator[TcpRig]:
    bus = SimulatedBus(meters)
    async with TcpMeterServer(bus) as server:
        channel = tcp_channel(server.port, **channel_kw)
        transport = TcpClientTransport(channel)
        await transport.open()
        try:
            yield TcpRig(bus, server, transport, Link(transport, channel))
        finally:
            await transport.close()
