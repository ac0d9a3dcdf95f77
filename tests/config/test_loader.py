"""A good mapping becomes the expected model objects; defaults, paths, secrets, shorthand."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loader import MappingError, load_mapping
from bridge.config.model import (
    AddressWidth,
    ChannelKind,
    IdentifyMethod,
    ModbusTable,
    ModbusType,
    Parity,
    SecurityPolicy,
    WordOrder,
)

GOOD = """\
<mapping>
  <opcua endpoint="opc.tcp://127.0.0.1:4841/x" security="None Basic256Sha256_Sign"
         allow-anonymous="false" pki-dir="pki" certificate="/etc/cert.der" private-key="key.pem"
         grouping="group">
    <user name="scada" password-hash="$argon2id$v=19$m=65536,t=3,p=4$abc$def"/>
  </opcua>
  <modbus port="5502" layout="per-meter" table="input" type="int32" word-order="CDAB"
          allow="127.0.0.1 10.0.0.0/8" uvloop="false" bad-value-exception="true"/>
  <storage path="data/r.sqlite3" retention-days="30" retention-energy-days="800"/>
  <simulator spec="sim/site.spec"/>
  <export sender-inn="77" timezone="Europe/Samara"><point meter="m1" code="101" name="Input"/></export>
  <listener name="gsm" port="7005" identify="serial-number" identify-timeout="20"
            identify-address="49932" identify-address-width="4"/>
  <channel name="line1" response-timeout="1.5" frame-gap="0.01" retries="3" group="North"
           description="Riser">
    <serial port="/dev/ttyUSB0" baudrate="19200" parity="E" stopbits="2" bytesize="7"/>
    <meter name="m1" model="307" address="49932" address-width="4" level="0"
           password="0102030405AB" backup-channel="gsm1" energy-scale="0.001" bad-after="60"
           description="Input">
      <scale register="energy_active_import_t1" value="0.1"/>
      <tag name="ua" register="voltage_a" scale="2" offset="-1" unit="kV" description="U A"
           node-id="ns=2;s=UA" store="true">
        <modbus table="holding" address="300" type="int32" word-order="DCBA" scale="10"/>
      </tag>
      <tags all="true"/>
    </meter>
    <meter name="m2" model="104" address="13">
      <tags registers="voltage current energy_active_import_total"/>
    </meter>
  </channel>
  <channel name="gsm1">
    <dial-in listener="gsm" identity="012049932"/>
  </channel>
  <channel name="tcp1">
    <tcp host="10.0.0.5" port="4001" connect-timeout="3" keepalive="false"/>
    <meter name="m3" model="107" address="255" wake-byte="true" unit-id="5"/>
  </channel>
  <poll-group name="fast" interval="500ms" meters="m1" registers="voltage_a voltage_b"/>
  <poll-group name="slow" interval="1.5h" meters="m2" registers="voltage current"/>
  <poll-group name="energy" cron="*/15 * * * *" meters="all" store="false"
              registers="energy_active_import_total"/>
  <tag name="e" meter="m3" register="energy_active_import_total"/>
</mapping>
"""


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "site.xml"
    path.write_text(GOOD, encoding="utf-8")
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "site.spec").write_text("meter 107:255\n")
    return path


def test_channels_and_listener(good: Path) -> None:
    m = load_mapping(good)
    assert m.source == str(good)
    (listener,) = m.listeners
    assert (listener.name, listener.port, listener.method) == ("gsm", 7005, IdentifyMethod.SERIAL_NUMBER)
    assert (listener.identify_timeout, listener.identify_address, listener.identify_address_width) == (
        20.0,
        49932,
        4,
    )
    assert [c.kind for c in m.channels] == [ChannelKind.SERIAL, ChannelKind.DIAL_IN, ChannelKind.TCP_CLIENT]
    line1, gsm1, tcp1 = m.channels
    assert line1.serial is not None and line1.tcp is None and line1.dial_in is None
    assert (line1.serial.port, line1.serial.baudrate, line1.serial.parity) == (
        "/dev/ttyUSB0",
        19200,
        Parity.EVEN,
    )
    assert (line1.serial.stopbits, line1.serial.bytesize) == (2.0, 7)
    assert (line1.response_timeout, line1.frame_gap, line1.retries) == (1.5, 0.01, 3)
    assert (line1.group, line1.description, line1.origin.line) == ("North", "Riser", 14)
    assert gsm1.dial_in is not None and (gsm1.dial_in.listener, gsm1.dial_in.identity) == ("gsm", "012049932")
    assert tcp1.tcp is not None
    assert (tcp1.tcp.host, tcp1.tcp.port, tcp1.tcp.connect_timeout, tcp1.tcp.keepalive) == (
        "10.0.0.5",
        4001,
        3.0,
        False,
    )
    assert (gsm1.response_timeout, gsm1.retries, gsm1.reconnect_min, gsm1.reconnect_max) == (
        1.0,
        1,
        1.0,
        60.0,
    )


def test_meters(good: Path) -> None:
    m = load_mapping(good)
    m1, m2, m3 = m.meters
    assert (m1.channel, m1.template, m1.address, m1.address_width) == (
        "line1",
        "milur-3phase",
        49932,
        AddressWidth.FOUR,
    )
    assert (m1.access_level, m1.backup_channel, m1.energy_scale, m1.bad_after) == (0, "gsm1", 0.001, 60.0)
    assert m1.password.reveal() == bytes.fromhex("0102030405AB")
    assert dict(m1.scale_overrides) == {"energy_active_import_t1": 0.1}
    assert m.effective_scale(m1, "energy_active_import_t1") == 0.1
    assert m.effective_scale(m1, "energy_active_import_total") == 0.001
    # wake byte: on by default for the 104 only (protocol notes §1), settable for others
    assert (m1.wake_byte, m2.wake_byte, m3.wake_byte) == (False, True, True)
    assert m2.password.reveal() == b"\xff" * 6 and m2.template == "milur-1phase"
    assert (m2.access_level, m2.bad_after, m2.modbus_unit_id, m3.modbus_unit_id) == (1, 300.0, None, 5)


def test_poll_groups(good: Path) -> None:
    fast, slow, energy = load_mapping(good).poll_groups
    assert (fast.interval, fast.cron, fast.meters) == (0.5, None, ("m1",))
    assert slow.interval == 5400.0
    assert (energy.interval, energy.cron, energy.store) == (None, "*/15 * * * *", False)
    assert energy.meters == ("m1", "m2", "m3")  # "all", in declaration order
    assert energy.registers == ("energy_active_import_total",)


def test_tags_explicit_and_shorthand(good: Path) -> None:
    m = load_mapping(good)
    keys = [t.key for t in m.tags]
    # document order; <tags all> on m1 adds the polled registers without an explicit tag, in
    # template order; <tags registers> names them after the registers
    assert keys == [
        "m1.ua",
        "m1.voltage_b",
        "m1.energy_active_import_total",
        "m2.voltage",
        "m2.current",
        "m2.energy_active_import_total",
        "m3.e",
    ]
    ua = m.tags[0]
    assert (ua.register, ua.scale, ua.offset, ua.unit, ua.description) == (
        "voltage_a",
        2.0,
        -1.0,
        "kV",
        "U A",
    )
    assert (ua.opcua_node_id, ua.store) == ("ns=2;s=UA", True)
    assert ua.modbus is not None
    assert (
        ua.modbus.table,
        ua.modbus.address,
        ua.modbus.data_type,
        ua.modbus.word_order,
        ua.modbus.scale,
    ) == (
        ModbusTable.HOLDING,
        300,
        ModbusType.INT32,
        WordOrder.DCBA,
        10.0,
    )
    short = m.tags[1]
    assert (short.name, short.register, short.scale, short.unit, short.modbus, short.store) == (
        "voltage_b",
        "voltage_b",
        1.0,
        None,
        None,
        None,
    )
    assert m.tags[-1].meter == "m3"


def test_sections_and_relative_paths(good: Path) -> None:
    m = load_mapping(good)
    base = good.parent
    o = m.opcua
    assert (o.endpoint, o.allow_anonymous, o.grouping) == ("opc.tcp://127.0.0.1:4841/x", False, "group")
    assert o.security == (SecurityPolicy.NONE, SecurityPolicy.BASIC256SHA256_SIGN)
    assert o.pki_dir == str(base / "pki")
    assert o.certificate == "/etc/cert.der"  # absolute paths stay
    assert o.private_key == str(base / "key.pem")
    assert [u.name for u in o.users] == ["scada"]
    assert o.users[0].password_hash.reveal().startswith(b"$argon2id$")
    mb = m.modbus
    assert (mb.port, mb.layout, mb.table, mb.data_type, mb.word_order) == (
        5502,
        "per-meter",
        ModbusTable.INPUT,
        ModbusType.INT32,
        WordOrder.CDAB,
    )
    assert (mb.allow, mb.use_uvloop, mb.bad_value_exception, mb.host) == (
        ("127.0.0.1", "10.0.0.0/8"),
        False,
        True,
        "127.0.0.1",
    )
    assert m.storage.enabled and m.storage.path == str(base / "data" / "r.sqlite3")
    assert (m.storage.retention_days, m.storage.retention_energy_days, m.storage.retention_instant_days) == (
        30,
        800,
        None,
    )
    assert m.simulator.enabled and m.simulator.spec == str(base / "sim" / "site.spec")
    assert m.export.timezone == "Europe/Samara" and m.export.points["m1"].code == "101"
    assert m.status.enabled and m.status.username is None  # absent section: defaults


def test_a_minimal_mapping_takes_every_default(tmp_path: Path) -> None:
    path = tmp_path / "min.xml"
    path.write_text(
        '<mapping><channel name="c"><serial port="loop://"/>'
        '<meter name="m" model="105" address="1"><tags all="true"/></meter></channel>'
        '<poll-group name="p" interval="30" meters="m" registers="voltage"/></mapping>'
    )
    m = load_mapping(path)
    assert m.poll_groups[0].interval == 30.0
    assert [t.key for t in m.tags] == ["m.voltage"]
    assert m.storage.enabled is False and m.simulator.enabled is False
    assert m.opcua.pki_dir == "var/pki"  # defaults are not moved next to the mapping
    assert m.channels[0].serial is not None and m.channels[0].serial.parity is Parity.NONE


def test_the_model_is_frozen(good: Path) -> None:
    m = load_mapping(good)
    with pytest.raises(AttributeError):
        m.meters[0].address = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.meters[0].scale_overrides["voltage_a"] = 2.0  # type: ignore[index]


def test_passwords_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    path = tmp_path / "s.xml"
    path.write_text(
        '<mapping><status username="a" password-hash="TopSecretHash"/>'
        '<channel name="c"><serial port="loop://"/>'
        '<meter name="m" model="105" address="1" password="SuperSecret99"><tags all="true"/></meter>'
        '<meter name="n" model="105" address="2" password="A1B2C3D4E5F6"><tags all="true"/></meter>'
        "</channel>"
        '<poll-group name="p" interval="30s" meters="all" registers="voltage bogus"/></mapping>'
    )
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    text = str(info.value) + repr(info.value.errors)
    assert "password must be 12 hex digits" in text
    for secret in ("SuperSecret99", "TopSecretHash", "A1B2C3D4E5F6", "a1b2c3d4e5f6"):
        assert secret not in text
    path.write_text(path.read_text().replace("SuperSecret99", "0102030405AB").replace(" bogus", ""))
    path.write_text(path.read_text().replace("TopSecretHash", "$argon2id$v=19$x"))
    m = load_mapping(path)
    assert "0102030405AB" not in repr(m).upper() and "Secret(***)" in repr(m.meters[0])


def test_errors_are_sorted_by_line_and_render_as_file_line_message(tmp_path: Path) -> None:
    path = tmp_path / "e.xml"
    path.write_text(
        "<mapping>\n"
        '  <poll-group name="p" interval="30s" meters="zz" registers="voltage"/>\n'
        '  <channel name="c"><dial-in listener="nope" identity="1"/></channel>\n'
        "</mapping>\n"
    )
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:2: poll group 'p': no meter named 'zz'",
        f"{path}:3: channel 'c': no <listener> named 'nope' (none declared)",
    ]


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as info:
        load_mapping(tmp_path / "nope.xml")
    (error,) = info.value.errors
    assert error.line == 0 and "does not exist" in error.message
    assert str(error) == f"{tmp_path / 'nope.xml'}: the mapping file does not exist (or is not a file)"


def test_a_large_dial_in_site_loads(tmp_path: Path) -> None:
    """Thousands of dial-in channels: every check stays linear enough to load it in a test."""
    count = 3000
    channels = "".join(
        f'<channel name="h{i}"><dial-in listener="gsm" identity="{356938035000000 + i}"/>'
        f'<meter name="m{i}" model="107" address="255"><tags all="true"/></meter></channel>'
        for i in range(count)
    )
    path = tmp_path / "big.xml"
    path.write_text(
        f'<mapping><modbus enabled="false"/><listener name="gsm"/>{channels}'
        '<poll-group name="e" cron="*/15 * * * *" meters="all" registers="energy_active_import_total"/>'
        "</mapping>"
    )
    m = load_mapping(path)
    assert len(m.channels) == len(m.meters) == len(m.tags) == count
    assert len(m.poll_groups[0].meters) == count
