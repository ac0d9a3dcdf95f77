"""BridgeApp.reload as a difference, counted on the simulator behind two TCP channels.

The site: channel ``line`` (m307, m107) and channel ``far`` (m105), each a simulated bus behind its
own TCP server, started in-process from ``site.sim``. The reload removes m107 and m307's tag F, adds
m307's tag Ia and changes ``far``'s response timeout. ``line`` did not change: its connection and
the sessions of m307 stay (counted on the simulator), while ``far`` reconnects. OPC UA nodes and
Modbus registers follow: F and m107 are gone, Ia is served. A bad mapping before that is refused
with its errors and changes nothing.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from bridge.app import BridgeApp
from bridge.config.loader import load_mapping
from bridge.simulator.serving import TcpMeterServer
from bridge.simulator.spec import RunningSimulator
from bridge.tags import Quality, TagStore

pytestmark = pytest.mark.timeout(60)

M307_UNIT, M107_UNIT = 7, 8
F_ADDRESS, IA_ADDRESS = 120, 130


def ports_for(free_port: Callable[[], int], n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def mapping_xml(ports: list[int], *, second: bool = False, bad: bool = False) -> str:
    """The first site, or (``second``) the reloaded one; ``bad`` adds a tag of no register."""
    line, far, opcua, modbus, status = ports
    if second:
        m307_tags = f'<tag name="Ia" register="current_a"><modbus address="{IA_ADDRESS}"/></tag>'
        m107 = ""
        timeout, groups = "0.8", (
            '<poll-group name="three" interval="300ms" meters="m307" registers="voltage_a current_a"/>'
            '<poll-group name="single" interval="300ms" meters="m105" registers="voltage"/>'
        )
    else:
        m307_tags = f'<tag name="F" register="frequency"><modbus address="{F_ADDRESS}"/></tag>'
        m107 = f'<meter name="m107" model="107" address="2" unit-id="{M107_UNIT}"><tags ' \
            'registers="voltage"/></meter>'
        timeout, groups = "1", (
            '<poll-group name="three" interval="300ms" meters="m307" registers="voltage_a frequency"/>'
            '<poll-group name="single" interval="300ms" meters="m107 m105" registers="voltage"/>'
        )
    if bad:
        m307_tags += '<tag name="X" register="no_such_register"/>'
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<mapping name="reload-app-test">
  <simulator spec="site.sim"/>
  <opcua endpoint="opc.tcp://127.0.0.1:{opcua}/milur-bridge" security="None"/>
  <modbus host="127.0.0.1" port="{modbus}"/>
  <status host="127.0.0.1" port="{status}"/>
  <channel name="line" response-timeout="1" retries="1">
    <tcp host="127.0.0.1" port="{line}" connect-timeout="2"/>
    <meter name="m307" model="307" address="1" unit-id="{M307_UNIT}">
      <tag name="Ua" register="voltage_a"/>
      {m307_tags}
    </meter>
    {m107}
  </channel>
  <channel name="far" response-timeout="{timeout}" retries="1">
    <tcp host="127.0.0.1" port="{far}" connect-timeout="2"/>
    <meter name="m105" model="105" address="3">
      <tag name="U" register="voltage"/>
    </meter>
  </channel>
  {groups}
</mapping>
"""


def site_sim(ports: list[int]) -> str:
    """Two buses, each behind its own TCP server."""
    return f"""\
meter 307:1 serial=012000001
meter 107:2 serial=012000002
tcp 127.0.0.1:{ports[0]}
bus
meter 105:3 serial=012000003
tcp 127.0.0.1:{ports[1]}
"""


def good(store: TagStore, key: str) -> bool:
    value = store.get(key)
    return value is not None and value.quality is Quality.Good


def server_of(simulator: RunningSimulator) -> TcpMeterServer:
    [server] = [f for f in simulator.forms if isinstance(f, TcpMeterServer)]
    return server


@pytest.fixture
async def site(tmp_path: Path, free_port, no_leftovers) -> AsyncIterator[tuple[BridgeApp, Path, list[int]]]:
    ports = ports_for(free_port, 5)
    (tmp_path / "site.sim").write_text(site_sim(ports))
    path = tmp_path / "site.xml"
    path.write_text(mapping_xml(ports))
    app = BridgeApp(load_mapping(path), mapping_path=path)
    await app.start()
    try:
        yield app, path, ports
    finally:
        await app.stop()
        await asyncio.get_running_loop().shutdown_default_executor()


async def read_float(client: AsyncModbusTcpClient, unit: int, address: int) -> float | int:
    """The float at ``address`` of ``unit``, or the exception code of the answer."""
    reply = await client.read_holding_registers(address, count=2, device_id=unit)
    if reply.isError():
        return int(reply.exception_code)
    return float(struct.unpack(">f", struct.pack(">HH", *reply.registers))[0])


async def test_reload_changes_only_what_differs(site, wait_until) -> None:
    app, path, ports = site
    store = app.store
    keys = ("m307.Ua", "m307.F", "m107.voltage", "m105.U")
    await wait_until(lambda: all(good(store, k) for k in keys), within=20, what="first values")
    line_sim, far_sim = app.simulator
    line_server, far_server = server_of(line_sim), server_of(far_sim)
    m307, m105 = line_sim.bus.find(1, 1), far_sim.bus.find(3, 1)
    assert app.collector is not None
    collector = app.collector
    line_worker = collector.workers["line"]

    # a bad mapping: refused with its errors, the running one stays and goes on polling
    running = app.mapping
    path.write_text(mapping_xml(ports, second=True, bad=True))
    ok, errors = await app.reload()
    assert not ok and any(str(path) in e and "no_such_register" in e for e in errors), errors
    assert app.mapping is running and app.collector is collector
    assert collector.workers["line"] is line_worker and good(store, "m307.F")
    requests = m307.counters.requests
    await wait_until(lambda: m307.counters.requests > requests + 2, within=10, what="still polled")

    accepted = (line_server.accepted, far_server.accepted)
    sessions = (m307.counters.sessions_opened, m105.counters.sessions_opened)
    path.write_text(mapping_xml(ports, second=True))
    assert await app.reload() == (True, [])
    assert store.get("m307.F") is None and store.get("m107.voltage") is None
    assert store.get("m107.diag.state") is None
    ia = store.get("m307.Ia")
    assert ia is not None and ia.quality in (Quality.Bad_WaitingForInitialData, Quality.Good)
    await wait_until(lambda: good(store, "m307.Ia"), within=20, what="the added tag polled")
    moment = store.get("m105.U").source_time  # type: ignore[union-attr]
    await wait_until(
        lambda: (tv := store.get("m105.U")) is not None and tv.quality is Quality.Good
        and tv.source_time > moment,  # type: ignore[operator]
        within=20, what="m105 polled after far reconnected",
    )  # fmt: skip

    # line did not change: same connection, same sessions; far changed: one new connection
    assert line_server.accepted == accepted[0]
    assert m307.counters.sessions_opened == sessions[0]
    assert collector.workers["line"] is line_worker
    assert far_server.accepted == accepted[1] + 1
    assert m105.counters.sessions_opened == sessions[1] + 1

    # the publishers follow: F and m107 gone, Ia served
    async with Client(app.mapping.opcua.endpoint, timeout=5) as client:
        ns = await client.get_namespace_index(app.mapping.opcua.namespace_uri)
        assert isinstance(await client.get_node(ua.NodeId("m307.Ia", ns)).read_value(), float)
        for gone in ("m307.F", "m107.voltage"):
            with pytest.raises(ua.UaStatusCodeError):
                await client.get_node(ua.NodeId(gone, ns)).read_value()
    modbus = AsyncModbusTcpClient("127.0.0.1", port=ports[3], timeout=2, retries=0)
    assert await modbus.connect()
    try:
        ia_value = await read_float(modbus, M307_UNIT, IA_ADDRESS)
        assert isinstance(ia_value, float) and ia_value > 0
        assert await read_float(modbus, M307_UNIT, F_ADDRESS) == 0x02  # illegal data address
        assert await read_float(modbus, M107_UNIT, 100) == 0x0B  # unknown unit id
    finally:
        modbus.close()
