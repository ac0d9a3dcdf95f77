"""A whole bridge on loopback for fault and security tests.

A site mapping is written as XML (so the loader, ``BridgeApp.reload`` and the commands see a real
file) with every server on 127.0.0.1 and port 0 (OPC UA on a free port: its clients need the
port in the URL). Simulated meters are served by the test itself, so that it can switch their
faults, drop their connections and unplug their lines. Values are read back through real clients:
pymodbus for Modbus (values and the per-meter status block) and asyncua for OPC UA.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from bridge.app import BridgeApp
from bridge.config.loader import load_mapping
from bridge.config.modbus_map import RegisterPlacement, resolve_modbus_map
from bridge.config.model import ModbusTable
from bridge.tags import Quality
from bridge.tags.keys import METER_STATES

#: fast timings: failures are seen within a poll or two, reconnections within a fraction of a second
CHANNEL_TIMING = 'response-timeout="0.3" retries="0" reconnect-min="0.05" reconnect-max="0.5"'
NAMESPACE = "urn:milur-bridge"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (OPC UA needs it in the endpoint URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MeterSpec:
    """One meter of the site: its name, model, address and optional extra attributes."""

    name: str
    address: int
    model: str = "105"
    attrs: str = ""
    registers: str = "voltage frequency"


@dataclass
class ChannelSpec:
    """One channel: its transport element (``<tcp .../>`` etc.) and meters."""

    name: str
    transport: str
    meters: Sequence[MeterSpec]
    attrs: str = CHANNEL_TIMING


@dataclass
class SiteSpec:
    """A whole mapping; render it with :meth:`xml`."""

    channels: Sequence[ChannelSpec]
    opcua_port: int = field(default_factory=free_port)
    interval: str = "300ms"
    listener: str = (
        '<listener name="gsm" host="127.0.0.1" port="0" identify="imei" identify-timeout="2"/>'
    )
    opcua_attrs: str = 'security="None"'
    opcua_users: str = ""  # <user .../> elements inside <opcua>
    modbus_attrs: str = ""
    status_attrs: str = ""
    extra: str = ""

    @property
    def endpoint(self) -> str:
        """OPC UA endpoint URL."""
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/milur-bridge"

    def xml(self) -> str:
        """The mapping document."""
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<mapping name="faults" description="fault and security tests">',
            f'  <opcua endpoint="{self.endpoint}" {self.opcua_attrs}>{self.opcua_users}</opcua>',
            f'  <modbus host="127.0.0.1" port="0" {self.modbus_attrs}/>',
            f'  <status host="127.0.0.1" port="0" {self.status_attrs}/>',
            f"  {self.listener}",
        ]
        for ch in self.channels:
            parts.append(f'  <channel name="{ch.name}" {ch.attrs}>')
            parts.append(f"    {ch.transport}")
            for m in ch.meters:
                parts.append(
                    f'    <meter name="{m.name}" model="{m.model}" address="{m.address}" {m.attrs}>'
                )
                parts.append(f'      <tags registers="{m.registers}"/>')
                parts.append("    </meter>")
            parts.append("  </channel>")
        for m in self.meters():
            parts.append(
                f'  <poll-group name="g-{m.name}" interval="{self.interval}" meters="{m.name}" '
                f'registers="{m.registers}"/>'
            )
        parts.append(self.extra)
        parts.append("</mapping>")
        return "\n".join(parts) + "\n"

    def meters(self) -> list[MeterSpec]:
        """Every meter, in mapping order."""
        return [m for ch in self.channels for m in ch.meters]


def tcp(port: int) -> str:
    """Transport element of a TCP-client channel to 127.0.0.1:port."""
    return f'<tcp host="127.0.0.1" port="{port}" connect-timeout="1"/>'


def dial_in(imei: str) -> str:
    """Transport element of a dial-in channel of listener ``gsm``."""
    return f'<dial-in listener="gsm" identity="{imei}"/>'


def serial(device: str) -> str:
    """Transport element of a serial channel."""
    return f'<serial port="{device}" baudrate="9600"/>'


@contextlib.asynccontextmanager
async def running_bridge(path: Path, spec: SiteSpec | None = None) -> AsyncIterator[BridgeApp]:
    """Write ``spec`` to ``path`` (unless None: the file is already there), start a BridgeApp."""
    if spec is not None:
        path.write_text(spec.xml())  # noqa: ASYNC240 — test set-up
    app = BridgeApp(load_mapping(path), mapping_path=path)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


# -- Modbus --------------------------------------------------------------------------------------
def placement(app: BridgeApp, key: str) -> RegisterPlacement:
    """Where the running mapping serves ``key``."""
    return next(p for p in resolve_modbus_map(app.mapping).placements if p.key == key)


def unit_of(app: BridgeApp, meter: str) -> int:
    """Modbus unit id of a meter."""
    return resolve_modbus_map(app.mapping).unit_ids[meter]


@contextlib.asynccontextmanager
async def modbus_client(app: BridgeApp) -> AsyncIterator[AsyncModbusTcpClient]:
    """A connected pymodbus client of the bridge's Modbus server."""
    assert app.modbus is not None
    client = AsyncModbusTcpClient("127.0.0.1", port=app.modbus.port, timeout=3, retries=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read_words(client: AsyncModbusTcpClient, p: RegisterPlacement) -> list[int]:
    """The registers of one placement."""
    read = (
        client.read_holding_registers
        if p.table is ModbusTable.HOLDING
        else client.read_input_registers
    )
    rr = await read(p.address, count=p.words, device_id=p.unit_id)
    assert not rr.isError(), rr
    return list(rr.registers)


async def read_float(client: AsyncModbusTcpClient, app: BridgeApp, key: str) -> float:
    """A float32 ABCD tag read over Modbus."""
    words = await read_words(client, placement(app, key))
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


@dataclass(frozen=True)
class MeterStatus:
    """The per-meter Modbus status block (docs/modbus.md)."""

    quality: int
    age_oldest: int
    failures: int
    state: str
    age_newest: int


async def read_status(client: AsyncModbusTcpClient, app: BridgeApp, meter: str) -> MeterStatus:
    """A meter's status block, read over Modbus."""
    base = app.mapping.modbus.status_address
    rr = await client.read_holding_registers(base, count=5, device_id=unit_of(app, meter))
    assert not rr.isError(), rr
    q, oldest, failures, state, newest = rr.registers
    name = METER_STATES[state] if state < len(METER_STATES) else f"unknown({state})"
    return MeterStatus(q, oldest, failures, name, newest)


# -- OPC UA --------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def opcua_client(endpoint: str) -> AsyncIterator[tuple[Client, int]]:
    """A connected anonymous asyncua client and our namespace index."""
    client = Client(endpoint, timeout=5)
    async with client:
        yield client, await client.get_namespace_index(NAMESPACE)


async def read_dv(client: Client, ns: int, key: str) -> ua.DataValue:
    """DataValue of a tag (NodeId ``ns=<ns>;s=<key>``)."""
    node = client.get_node(ua.NodeId(key, ns, ua.NodeIdType.String))
    return await node.read_data_value(raise_on_bad_status=False)


def quality_of(dv: ua.DataValue) -> Quality:
    """Our Quality for an OPC UA status code."""
    return Quality(dv.StatusCode.value)


async def wait_for(predicate_coro: object, within: float = 10.0, what: str = "") -> object:
    """Await ``predicate_coro()`` (an async callable) until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: object = None
    while True:
        last = await predicate_coro()  # type: ignore[operator]
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what} (last: {last!r})")
        await asyncio.sleep(0.1)


async def healthy_and_moving(
    app: BridgeApp, endpoint: str, meters: Iterable[str], register: str = "voltage", within: float = 10
) -> None:
    """Every meter in ``meters`` is Good on both sides and its OPC UA source time moves on."""
    names = list(meters)
    async with opcua_client(endpoint) as (client, ns), modbus_client(app) as mb:
        first = {}
        for name in names:
            dv = await wait_for(
                lambda n=name: _good_dv(client, ns, f"{n}.{register}"), within, f"{name} Good"
            )
            first[name] = dv.SourceTimestamp  # type: ignore[attr-defined]
        for name in names:
            await wait_for(
                lambda n=name: _newer(client, ns, f"{n}.{register}", first[n]),
                within,
                f"{name} source time moves on",
            )

            async def status_good(n: str = name) -> bool:
                return (await read_status(mb, app, n)).quality == Quality.Good.modbus_code

            await wait_for(status_good, within, f"{name} Modbus status Good")
            value = await read_float(mb, app, f"{name}.{register}")
            assert value == value and value != 0.0, (name, value)  # a number, not the NaN of "none"


async def _good_dv(client: Client, ns: int, key: str) -> ua.DataValue | None:
    dv = await read_dv(client, ns, key)
    return dv if dv.StatusCode.is_good() and dv.SourceTimestamp is not None else None


async def _newer(client: Client, ns: int, key: str, than: object) -> bool:
    dv = await read_dv(client, ns, key)
    return bool(dv.StatusCode.is_good() and dv.SourceTimestamp > than)  # type: ignore[operator]


# -- leftovers -----------------------------------------------------------------------------------
@dataclass
class Census:
    """Counts of asyncio tasks and threads, to show that nothing grows without bound."""

    tasks: int
    threads: int

    @classmethod
    def take(cls) -> Census:
        """Count now (tasks of the test's own proxies are not the bridge's)."""
        tasks = [t for t in asyncio.all_tasks() if not t.get_name().startswith("proxy ")]
        return cls(len(tasks), threading.active_count())


async def settled_census(rounds: int = 5) -> Census:
    """A census after letting finished tasks go."""
    for _ in range(rounds):
        await asyncio.sleep(0.05)
    return Census.take()


# -- a TCP proxy that can turn its connections half-open ----------------------------------------
class FreezableProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``; ``freeze()`` makes the open connections
    half-open: the sockets stay up and accept writes, but nothing is forwarded any more.
    Connections made after ``freeze()`` work normally (the module dialled a new data session).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._frozen: list[asyncio.Event] = []
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        """Bound port."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def freeze(self) -> None:
        """Stop forwarding on every open connection (they stay open)."""
        for event in self._frozen:
            event.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("proxy connection")
        self._tasks.add(task)
        self.accepted += 1
        frozen = asyncio.Event()
        self._frozen.append(frozen)
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        self._writers.append(up_writer)
        try:
            await asyncio.gather(
                asyncio.create_task(self._pump(reader, up_writer, frozen), name="proxy pump"),
                asyncio.create_task(self._pump(up_reader, writer, frozen), name="proxy pump"),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            up_writer.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, frozen: asyncio.Event) -> None:
        while data := await src.read(4096):
            if not frozen.is_set():  # frozen: read and drop, never forward, never close
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
