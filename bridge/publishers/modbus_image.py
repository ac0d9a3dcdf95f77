"""The served register image: the registers of every unit id and table, as clients read them.

Only the publisher's update task writes it; the server reads it synchronously inside one event
loop callback, so a read never sees half of a multi-register value (no torn floats).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from bridge.config.model import ModbusTable


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes the server answers with (docs/modbus.md)."""

    ILLEGAL_FUNCTION = 0x01  # anything but reading holding/input registers (the map is read-only)
    ILLEGAL_ADDRESS = 0x02  # a register outside the map
    ILLEGAL_VALUE = 0x03  # a malformed request (count 0 or above 125, wrong length)
    GATEWAY_NO_RESPONSE = 0x0B  # unknown unit id, or a bad tag with bad_value_exception


#: Modbus function code → table it reads
READ_FUNCTIONS = {3: ModbusTable.HOLDING, 4: ModbusTable.INPUT}
MAX_READ_COUNT = 125


class UnknownUnit(LookupError):
    """The request named a unit id that the map does not serve."""


class TableImage:
    """A contiguous span of one table of one unit id; unmapped registers are refused."""

    __slots__ = ("start", "registers", "mapped", "bad")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        size = end - start
        self.registers = [0] * size
        self.mapped = bytearray(size)  # 1 where a tag or status register lives
        self.bad = bytearray(size)  # 1 where the tag is bad and reads must fail (0x0B)

    def read(self, address: int, count: int) -> list[int] | ExceptionCode:
        """``count`` registers from ``address``, or the exception code to answer."""
        offset = address - self.start
        end = offset + count
        if offset < 0 or end > len(self.registers) or self.mapped.find(0, offset, end) != -1:
            return ExceptionCode.ILLEGAL_ADDRESS
        if self.bad.find(1, offset, end) != -1:
            return ExceptionCode.GATEWAY_NO_RESPONSE
        return self.registers[offset:end]


class RegisterImage:
    """Registers of every served unit id; built once from the spans the map occupies."""

    def __init__(self, spans: Iterable[tuple[int, ModbusTable, int, int]]) -> None:
        """``spans``: (unit id, table, first address, register count) of every mapped value."""
        bounds: dict[tuple[int, ModbusTable], tuple[int, int]] = {}
        spans = list(spans)
        for unit, table, address, count in spans:
            low, high = bounds.get((unit, table), (address, address + count))
            bounds[(unit, table)] = (min(low, address), max(high, address + count))
        self._units: dict[int, dict[int, TableImage]] = {}
        for (unit, table), (low, high) in bounds.items():
            self._units.setdefault(unit, {})[_function_of(table)] = TableImage(low, high)
        for unit, table, address, count in spans:
            image = self._units[unit][_function_of(table)]
            offset = address - image.start
            image.mapped[offset : offset + count] = b"\x01" * count

    def units(self) -> frozenset[int]:
        """Served unit ids."""
        return frozenset(self._units)

    def has_unit(self, unit: int) -> bool:
        """True when ``unit`` is served."""
        return unit in self._units

    def read(self, unit: int, function_code: int, address: int, count: int) -> list[int] | ExceptionCode:
        """Answer a read of holding (3) or input (4) registers; raises ``UnknownUnit``."""
        tables = self._units.get(unit)
        if tables is None:
            raise UnknownUnit(unit)
        image = tables.get(function_code)
        if image is None:
            return ExceptionCode.ILLEGAL_ADDRESS
        return image.read(address, count)

    def write(
        self, unit: int, table: ModbusTable, address: int, registers: Sequence[int], bad: bool = False
    ) -> None:
        """Store registers of one value (publisher's update task only)."""
        image = self._units[unit][_function_of(table)]
        offset = address - image.start
        end = offset + len(registers)
        image.registers[offset:end] = registers
        image.bad[offset:end] = (b"\x01" if bad else b"\x00") * len(registers)


def _function_of(table: ModbusTable) -> int:
    return 3 if table is ModbusTable.HOLDING else 4
