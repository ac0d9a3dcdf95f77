"""Milur meter simulator: a stand-in for real meters in tests, the demo and training.

Programmatic use (every serving form is an async context manager)::

    from bridge.simulator import SimulatedMeter, SimulatedBus, PtyLine, TcpMeterServer, DialOutModem

    meter = SimulatedMeter(model="307", address=255, serial_number="012049932",
                           password=FACTORY_PASSWORD)
    bus = SimulatedBus([meter, SimulatedMeter("107", 49932)])   # a gateway: two meters, one line
    async with TcpMeterServer(bus, "127.0.0.1", 0) as server:   # GSM server mode / converter
        ...  # connect to 127.0.0.1:server.port
    async with PtyLine(bus, 9600, turnaround=0.02) as line:     # RS-485 on a pseudo-terminal
        ...  # serial.Serial(line.device, 9600); await line.close() unplugs, reopen() plugs back
    async with DialOutModem(bus, "127.0.0.1", port, imei="356938035643809") as modem:
        await modem.wait_connected()                           # GSM client mode (§7)

``SimulatedMeter`` options: ``address_width`` (1/4/None = by value), ``energy_scale`` (0.01 or
0.001), ``clock_bcd``, ``wake_quirk`` (the 104 quirk, default on for 104), ``access_levels``,
``session_timeout``, ``locked_error`` (0x09 or 0x0D), ``firmware``, ``seed``, ``clock``.
Run-time switches: ``meter.faults.silent / delay / bad_crc / garbage / wrong_address``;
``meter.advance(seconds)`` moves simulated time (energy grows, lockouts expire);
``meter.expire_session()``, ``meter.unlock()``, ``meter.values()``. Counters:
``meter.counters.requests / sessions_opened / wrong_passwords / ignored / errors_sent``.
Per connection: ``TcpMeterServer.drop()``, ``DialOutModem.drop()`` (redials while
``modem.reconnect`` is on), ``PtyLine.close()``.

What is simulated: FUNC 01 read, 02 write (relay, register 84; the clock, register 14), 08/09
sessions, 0F network address and C3 identification (by a GSM module only); archives and the
power journal (06, 0B, 0C, 0D, 10) generated from the seed and the simulated clock
(:mod:`bridge.simulator.archives`; ``search_delay`` sets how long a FUNC 10 search "runs").
``meter.clock_error`` makes the meter's clock drift.

Text descriptions (``--meter 307:255``) and spec files: :mod:`bridge.simulator.spec`.
"""

from bridge.simulator.bus import Answer, BusConnection, SimulatedBus, identify_reply
from bridge.simulator.meter import Faults, MeterCounters, SimulatedMeter
from bridge.simulator.pty import PtyLine
from bridge.simulator.serving import DialOutModem, TcpMeterServer
from bridge.simulator.spec import (
    FormSpec,
    RunningSimulator,
    SimulatorSpec,
    SpecError,
    load_spec,
    parse_meter,
)

__all__ = [
    "Answer",
    "BusConnection",
    "DialOutModem",
    "Faults",
    "FormSpec",
    "MeterCounters",
    "PtyLine",
    "RunningSimulator",
    "SimulatedBus",
    "SimulatedMeter",
    "SimulatorSpec",
    "SpecError",
    "TcpMeterServer",
    "identify_reply",
    "load_spec",
    "parse_meter",
]
