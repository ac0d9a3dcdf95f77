"""The typed configuration model: frozen dataclasses built once by the loader (DESIGN.md rule 6).

No dicts travel past the loader. Every object that came from a file carries its ``Origin``
(file and line) so later checks can report where a problem is.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an element was declared."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NO_ORIGIN = Origin("<built-in>", 0)


class Secret:
    """A secret value (meter password, user password hash) that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        """The secret bytes; call only where the secret is used on the wire or checked."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def frozen_map(d: Mapping[str, object] | None = None) -> Mapping[str, object]:
    """Read-only mapping helper for model fields."""
    return MappingProxyType(dict(d or {}))


# --------------------------------------------------------------------------- register templates
class RegisterFormat(enum.Enum):
    """Wire encodings of Milur register values (protocol notes §5)."""

    U8 = "u8"
    U16 = "u16"
    S16 = "s16"
    U24 = "u24"
    S24 = "s24"
    U32 = "u32"
    S32 = "s32"
    BCD32 = "bcd32"
    ASCII = "ascii"
    DATETIME = "datetime"


@dataclass(frozen=True, slots=True)
class RegisterDef:
    """One register of a meter model's register map (protocol notes §6)."""

    name: str  # stable name: voltage_a, energy_active_import_total, ...
    number: int  # register number sent in FUNC 01
    fmt: RegisterFormat
    scale: float = 1.0  # raw → engineering units
    unit: str = ""  # "V", "A", "W", "var", "VA", "Hz", "kWh", "kvarh", ""
    description: str = ""
    energy: bool = False  # energy registers: stored by default, scale overridable per meter
    writable: bool = False
    origin: Origin = NO_ORIGIN

    @property
    def is_numeric(self) -> bool:
        """True unless the register is text or a date/time."""
        return self.fmt not in (RegisterFormat.ASCII, RegisterFormat.DATETIME)


@dataclass(frozen=True, slots=True)
class Template:
    """A register map for a family of meter models (``mappings/templates/*.xml``)."""

    name: str  # e.g. "milur-1phase", "milur-3phase"
    models: tuple[str, ...]  # e.g. ("104", "105", "107")
    registers: Mapping[str, RegisterDef]  # by name
    origin: Origin = NO_ORIGIN


# --------------------------------------------------------------------------- channels
class ChannelKind(enum.Enum):
    """How a channel reaches its meters."""

    SERIAL = "serial"  # RS-485 through pyserial (device path or pyserial URL)
    TCP_CLIENT = "tcp-client"  # GSM module in server mode, RS-485/Ethernet converter
    DIAL_IN = "dial-in"  # GSM module in client mode, attached through a DialInListener


class Parity(enum.Enum):
    """Serial parity."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """RS-485 port settings (protocol notes §1: default 9600 8N1)."""

    port: str  # /dev/ttyUSB0, or a pyserial URL (rfc2217://, socket://, loop://)
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = Parity.NONE
    stopbits: float = 1


@dataclass(frozen=True, slots=True)
class TcpClientSettings:
    """Outgoing TCP connection to a module in server mode or a converter."""

    host: str
    port: int
    connect_timeout: float = 10.0
    keepalive: bool = True


class IdentifyMethod(enum.Enum):
    """How a dial-in connection is identified (protocol notes §7)."""

    IMEI = "imei"  # C3 handshake to FF FF FF FF, IMEI in the reply (default)
    SERIAL_NUMBER = "serial-number"  # read reg 68 from a configured address
    PEER_ADDRESS = "peer-address"  # match the peer's IP address


@dataclass(frozen=True, slots=True)
class DialInSettings:
    """Binds a channel to a dial-in listener and the identity of its module."""

    listener: str  # name of a ListenerConfig
    identity: str  # IMEI, serial number or IP address, per the listener's method


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One TCP port accepting many dial-in GSM modules."""

    name: str
    host: str = "0.0.0.0"
    port: int = 7001
    method: IdentifyMethod = IdentifyMethod.IMEI
    identify_timeout: float = 15.0
    identify_address: int = 255  # meter address for the serial-number method
    identify_address_width: int = 1
    max_unidentified: int = 1000  # identifications in flight; ~1 KiB each, bounded by identify_timeout
    max_connections: int = 20000
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """A bus: one transaction at a time, one worker (DESIGN.md rule 2)."""

    name: str
    kind: ChannelKind
    serial: SerialSettings | None = None
    tcp: TcpClientSettings | None = None
    dial_in: DialInSettings | None = None
    response_timeout: float = 1.0  # seconds; GSM wants several seconds
    frame_gap: float = 0.005  # silence between frames, seconds (≥ 3.5 char times on serial)
    retries: int = 1  # retries of a transient failure (timeout, CRC) per request
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    group: str = ""  # OPC UA folder ("site grouping"); empty = the channel's own folder
    description: str = ""
    origin: Origin = NO_ORIGIN


# --------------------------------------------------------------------------- meters
class AddressWidth(enum.Enum):
    """Meter address form (protocol notes §2; [open]: configurable per meter)."""

    AUTO = "auto"  # 1 byte if address <= 255, else 4 bytes
    ONE = "1"
    FOUR = "4"


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One meter on a channel."""

    name: str
    channel: str
    model: str  # "104", "105", "107", "305", "307"
    template: str  # template name resolved from the model or given explicitly
    address: int
    address_width: AddressWidth = AddressWidth.AUTO
    access_level: int = 1  # [open] byte value; 1 with the default password is common
    password: Secret = field(default_factory=lambda: Secret(b"\xff" * 6))
    backup_channel: str | None = None
    wake_byte: bool = False  # Milur 104 quirk (protocol notes §1); default on for model 104
    scale_overrides: Mapping[str, float] = field(default_factory=dict)  # register name → scale
    energy_scale: float | None = None  # overrides the scale of every energy register
    bad_after: float = 300.0  # seconds a failed tag stays Uncertain before it turns Bad
    modbus_unit_id: int | None = None
    description: str = ""
    origin: Origin = NO_ORIGIN

    @property
    def wire_address_width(self) -> int:
        """1 or 4."""
        if self.address_width is AddressWidth.ONE:
            return 1
        if self.address_width is AddressWidth.FOUR:
            return 4
        return 1 if self.address <= 255 else 4


# --------------------------------------------------------------------------- polling
@dataclass(frozen=True, slots=True)
class PollGroup:
    """Which registers of which meters are read, and how often."""

    name: str
    meters: tuple[str, ...]  # meter names
    registers: tuple[str, ...]  # register names
    interval: float | None = None  # seconds
    cron: str | None = None  # crontab expression (5 fields)
    store: bool | None = None  # storage of readings; None = template default (energy registers)
    origin: Origin = NO_ORIGIN


# --------------------------------------------------------------------------- publishers
class ModbusTable(enum.Enum):
    """Modbus register table."""

    HOLDING = "holding"
    INPUT = "input"


class ModbusType(enum.Enum):
    """Modbus data types and their width in 16-bit registers."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def words(self) -> int:
        """Number of 16-bit registers."""
        return {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}[
            self.value
        ]


class WordOrder(enum.Enum):
    """Byte/word order of multi-register values: ABCD is big-endian words and bytes."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


@dataclass(frozen=True, slots=True)
class ModbusPoint:
    """Modbus placement of one tag; None fields take meter/section defaults."""

    unit_id: int | None = None
    table: ModbusTable | None = None
    address: int | None = None
    data_type: ModbusType | None = None
    word_order: WordOrder | None = None
    scale: float | None = None  # integer types: register = value * scale


@dataclass(frozen=True, slots=True)
class ModbusSettings:
    """The ``<modbus>`` section."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5020
    layout: str = "per-meter"  # "per-meter" (unit id per meter) or "flat" (one unit id)
    flat_unit_id: int = 1
    table: ModbusTable = ModbusTable.HOLDING
    data_type: ModbusType = ModbusType.FLOAT32
    word_order: WordOrder = WordOrder.ABCD
    status_address: int = 0  # per-meter status block start (quality, age, failures, state)
    data_address: int = 100  # first automatically assigned data register
    bad_value_exception: bool = False  # answer 0x0B for a bad tag instead of value + status
    allow: tuple[str, ...] = ()  # client addresses / networks; empty = everyone
    max_connections: int = 32
    use_uvloop: bool = True
    origin: Origin = NO_ORIGIN


class SecurityPolicy(enum.Enum):
    """OPC UA security policy + mode pairs offered by the server."""

    NONE = "None"
    BASIC256SHA256_SIGN = "Basic256Sha256_Sign"
    BASIC256SHA256_SIGN_ENCRYPT = "Basic256Sha256_SignAndEncrypt"
    AES128_SIGN = "Aes128Sha256RsaOaep_Sign"
    AES128_SIGN_ENCRYPT = "Aes128Sha256RsaOaep_SignAndEncrypt"
    AES256_SIGN = "Aes256Sha256RsaPss_Sign"
    AES256_SIGN_ENCRYPT = "Aes256Sha256RsaPss_SignAndEncrypt"


@dataclass(frozen=True, slots=True)
class OpcUaUser:
    """A username with a salted password hash (argon2, made by ``milur-bridge hash-password``)."""

    name: str
    password_hash: Secret


@dataclass(frozen=True, slots=True)
class OpcUaSettings:
    """The ``<opcua>`` section."""

    enabled: bool = True
    endpoint: str = "opc.tcp://0.0.0.0:4840/milur-bridge"
    server_name: str = "milur-bridge"
    application_uri: str = "urn:milur-bridge:server"
    namespace_uri: str = "urn:milur-bridge"
    security: tuple[SecurityPolicy, ...] = (SecurityPolicy.NONE,)
    allow_anonymous: bool = True
    users: tuple[OpcUaUser, ...] = ()
    pki_dir: str = "var/pki"  # own/, trusted/, rejected/
    certificate: str | None = None  # PEM/DER file; generated into pki_dir/own if absent
    private_key: str | None = None
    grouping: str = "channel"  # "channel" or "group" (ChannelConfig.group folders)
    # diagnostic nodes in the address space: "all" (meters and channels), "meters" (no channel
    # diagnostics) or "none"; the TagStore, status page and metrics keep them all either way
    diagnostics: str = "all"
    origin: Origin = NO_ORIGIN


# --------------------------------------------------------------------------- tags
@dataclass(frozen=True, slots=True)
class TagConfig:
    """A name bound to one meter register; its key in the TagStore is ``"<meter>.<name>"``."""

    name: str
    meter: str
    register: str  # register name in the meter's template
    scale: float = 1.0  # applied after the template/meter scale
    offset: float = 0.0
    unit: str | None = None  # None = the register's unit
    description: str = ""
    opcua_node_id: str | None = None  # None = "ns=2;s=<meter>.<name>"
    modbus: ModbusPoint | None = None  # None = section/meter defaults (auto address)
    store: bool | None = None  # None = poll group / register default
    origin: Origin = NO_ORIGIN

    @property
    def key(self) -> str:
        """TagStore key."""
        return f"{self.meter}.{self.name}"


# --------------------------------------------------------------------------- the whole mapping
@dataclass(frozen=True, slots=True)
class StatusSettings:
    """The ``<status>`` section: HTTP status page, metrics, health."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    username: str | None = None
    password_hash: Secret | None = None


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The ``<storage>`` section (SQLite by default; docs/storage.md)."""

    enabled: bool = False
    path: str = "var/data/readings.sqlite3"
    retention_days: int = 400  # default retention of every class below
    retention_energy_days: int | None = None  # energy readings, daily/profile archives
    retention_instant_days: int | None = None  # instantaneous values (U, I, P, ...)
    retention_events_days: int | None = None  # journal events
    batch_rows: int = 500  # commit when this many rows are pending ...
    flush_interval: float = 1.0  # ... or this many seconds after the first pending row
    prune_interval: float = 3600.0  # seconds between retention runs
    max_pending_rows: int = 100_000  # rows queued beyond this are dropped (counted, logged once)


@dataclass(frozen=True, slots=True)
class MeasuringPoint:
    """An ASKUE measuring point: the code and name a meter is exported under (80020)."""

    code: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """The ``<export>`` section: who sends 80020 files and how meters appear in them."""

    sender_inn: str = ""
    sender_name: str = ""
    area_inn: str = ""
    area_name: str = ""
    timezone: str = "Europe/Moscow"  # days and half-hours of 80020 files are in this zone
    points: Mapping[str, MeasuringPoint] = field(default_factory=dict)  # meter name → point
    value_multiplier: float = 1.0  # kWh (kvarh) → the integer written in <value>
    boundary_tolerance: float = 900.0  # seconds: readings this close to a half-hour boundary count


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    """The ``<archives>`` section: meter archives, journals, backfill and clock (docs/storage.md).

    FUNC 06/0B/0C/0D/10 are known from one source only (protocol notes §4), so reading them is off
    by default. The clock check (register 14) runs with archive reading; clock correction is a
    separate switch, off by default.
    """

    enabled: bool = False
    meters: tuple[str, ...] = ()  # empty: every meter of the mapping
    daily: bool = True  # FUNC 0C daily records
    profile: bool = True  # FUNC 0D 30-minute load profile
    journal: bool = True  # FUNC 0B power on/off journal
    schedule: str = "5,35 * * * *"  # crontab: when missing records are looked for
    backfill_days: int = 7  # how far back a meter's memory is read when nothing is stored
    chunk: int = 8  # records read per archive job (live polls go between jobs)
    search_retry: float = 2.0  # FUNC 10 STATUS 1/2: ask again after this many seconds (§4)
    search_timeout: float = 60.0  # give a search up after this many seconds
    daily_registers: tuple[str, ...] = (
        "energy_active_import_total",
        "energy_active_import_t1",
        "energy_active_import_t2",
    )  # names of the BCD32 blocks of a daily record, in order ([one source] layout)
    profile_scale: float = 0.001  # kWh (kvarh) per unit of a profile word ([one source] layout)
    power_journal: int = 1  # LIST byte of the power on/off journal ([one source])
    timezone: str = ""  # zone of the meter's clock (IANA name); "" = the bridge host's zone
    clock_interval: float = 86400.0  # seconds between clock reads (and at first contact)
    clock_correction: bool = False  # write the meter's clock when it drifts (off: see docs)
    clock_threshold: float = 5.0  # seconds of drift before a correction
    clock_max_step: float = 30.0  # largest correction in one step, seconds (once a day at most)
    clock_write_register: int = 14  # FUNC 02 register of the clock write ([open], §4/§6)
    clock_bcd: bool = False  # register 14 in BCD rather than binary ([open], §6)

    def covers(self, meter: str) -> bool:
        """True when archives are read from ``meter``."""
        return self.enabled and (not self.meters or meter in self.meters)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """The ``<simulator>`` section: start simulated meters in-process (the demo)."""

    enabled: bool = False
    spec: str | None = None  # path of a simulator spec file, relative to the mapping


@dataclass(frozen=True, slots=True)
class SiteMapping:
    """A whole, validated site mapping. Collections are tuples in declaration order."""

    source: str
    templates: Mapping[str, Template]
    listeners: tuple[ListenerConfig, ...]
    channels: tuple[ChannelConfig, ...]
    meters: tuple[MeterConfig, ...]
    poll_groups: tuple[PollGroup, ...]
    tags: tuple[TagConfig, ...]
    opcua: OpcUaSettings = OpcUaSettings()
    modbus: ModbusSettings = ModbusSettings()
    status: StatusSettings = StatusSettings()
    storage: StorageSettings = StorageSettings()
    export: ExportSettings = ExportSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    archives: ArchiveSettings = ArchiveSettings()
    # Look-up indexes built once (a 10,000-meter site must not scan every list per meter).
    _channels_by_name: dict[str, ChannelConfig] = field(init=False, repr=False, compare=False)
    _meters_by_name: dict[str, MeterConfig] = field(init=False, repr=False, compare=False)
    _meters_by_channel: dict[str, tuple[MeterConfig, ...]] = field(
        init=False, repr=False, compare=False
    )
    _tags_by_meter: dict[str, tuple[TagConfig, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        on: dict[str, list[MeterConfig]] = {}
        for m in self.meters:
            on.setdefault(m.channel, []).append(m)
        tags: dict[str, list[TagConfig]] = {}
        for t in self.tags:
            tags.setdefault(t.meter, []).append(t)
        object.__setattr__(self, "_channels_by_name", {c.name: c for c in self.channels})
        object.__setattr__(self, "_meters_by_name", {m.name: m for m in self.meters})
        object.__setattr__(self, "_meters_by_channel", {k: tuple(v) for k, v in on.items()})
        object.__setattr__(self, "_tags_by_meter", {k: tuple(v) for k, v in tags.items()})

    def channel(self, name: str) -> ChannelConfig:
        """Channel by name (KeyError if there is none)."""
        return self._channels_by_name[name]

    def meter(self, name: str) -> MeterConfig:
        """Meter by name (KeyError if there is none)."""
        return self._meters_by_name[name]

    def meters_on(self, channel: str) -> tuple[MeterConfig, ...]:
        """Meters whose primary channel is ``channel``."""
        return self._meters_by_channel.get(channel, ())

    def tags_of(self, meter: str) -> tuple[TagConfig, ...]:
        """Tags bound to ``meter``, in declaration order."""
        return self._tags_by_meter.get(meter, ())

    def register_of(self, meter: MeterConfig, register: str) -> RegisterDef:
        """The register definition for a meter (template)."""
        return self.templates[meter.template].registers[register]

    def effective_scale(self, meter: MeterConfig, register: str) -> float:
        """Template scale with the meter's overrides applied (protocol notes §6: energy scale)."""
        reg = self.register_of(meter, register)
        if register in meter.scale_overrides:
            return meter.scale_overrides[register]
        if reg.energy and meter.energy_scale is not None:
            return meter.energy_scale
        return reg.scale

