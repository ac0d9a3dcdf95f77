"""Register map resolution and check_modbus_map errors (no sockets)."""

from __future__ import annotations

import pytest

from bridge.config.errors import MappingError
from bridge.config.modbus_map import (
    STATUS_WORDS,
    check_modbus_map,
    resolve_modbus_map,
)
from bridge.config.model import ModbusPoint, ModbusTable, ModbusType, WordOrder

from .builders import SOURCE, meter, settings, site, tag

THREE_TAGS = ("voltage_a", "power_active_total", "energy_active_import_total")


def three_tags(meter_name: str, first_line: int = 100) -> list:
    return [tag(meter_name, name, line=first_line + i) for i, name in enumerate(THREE_TAGS)]


def messages(mapping) -> list[str]:
    return [str(e) for e in check_modbus_map(mapping)]


def test_per_meter_layout_gives_same_layout_to_meters_of_one_model():
    mapping = site(
        [meter("m1"), meter("m2"), meter("m3")],
        three_tags("m1") + three_tags("m2") + three_tags("m3"),
        settings(),
    )
    resolved = resolve_modbus_map(mapping)
    assert resolved.unit_ids == {"m1": 1, "m2": 2, "m3": 3}
    layouts = {}
    for p in resolved.placements:
        layouts.setdefault(p.unit_id, []).append((p.tag.name, p.table, p.address, p.data_type))
    assert layouts[1] == layouts[2] == layouts[3]
    # float32 (section default) from data_address 100 in tag order
    assert [(name, address) for name, _, address, _ in layouts[1]] == [
        ("voltage_a", 100),
        ("power_active_total", 102),
        ("energy_active_import_total", 104),
    ]
    assert [(b.unit_id, b.address, b.meter) for b in resolved.status_blocks] == [
        (1, 0, "m1"),
        (2, 0, "m2"),
        (3, 0, "m3"),
    ]
    assert check_modbus_map(mapping) == []


def test_auto_unit_ids_skip_explicit_ones():
    mapping = site([meter("m1"), meter("m2", unit_id=1), meter("m3", unit_id=3), meter("m4")], [])
    assert resolve_modbus_map(mapping).unit_ids == {"m1": 2, "m2": 1, "m3": 3, "m4": 4}


def test_flat_layout_puts_everything_under_one_unit_and_stacks_status_blocks():
    mapping = site(
        [meter("m1"), meter("m2")],
        three_tags("m1") + three_tags("m2"),
        settings(layout="flat", flat_unit_id=9, data_type=ModbusType.FLOAT64),
    )
    resolved = resolve_modbus_map(mapping)
    assert {p.unit_id for p in resolved.placements} == {9}
    assert [p.address for p in resolved.placements] == [100, 104, 108, 112, 116, 120]
    assert [(b.unit_id, b.address) for b in resolved.status_blocks] == [(9, 0), (9, STATUS_WORDS)]


def test_explicit_placement_overrides_defaults_and_automatic_addresses_flow_around_it():
    point = ModbusPoint(
        table=ModbusTable.INPUT,
        address=102,
        data_type=ModbusType.INT32,
        word_order=WordOrder.CDAB,
        scale=10.0,
    )
    mapping = site(
        [meter("m1")],
        [
            tag("m1", "voltage_a", point=ModbusPoint(address=102)),
            tag("m1", "voltage_b"),
            tag("m1", "voltage_c"),
            tag("m1", "power_active_total", point=point),
        ],
        settings(),
    )
    placed = {p.tag.name: p for p in resolve_modbus_map(mapping).placements}
    assert (placed["voltage_a"].table, placed["voltage_a"].address) == (ModbusTable.HOLDING, 102)
    assert placed["voltage_b"].address == 100
    assert placed["voltage_c"].address == 104  # 102-103 taken by voltage_a
    p = placed["power_active_total"]
    assert (p.table, p.address, p.data_type, p.word_order, p.scale) == (
        ModbusTable.INPUT,
        102,
        ModbusType.INT32,
        WordOrder.CDAB,
        10.0,
    )
    assert placed["voltage_a"].unit == "V"


def test_text_tags_are_skipped_unless_placed_explicitly():
    mapping = site(
        [meter("m1")],
        [tag("m1", "serial_number", line=101), tag("m1", "voltage_a", line=102)],
        settings(),
    )
    resolved = resolve_modbus_map(mapping)
    assert [t.name for t in resolved.skipped] == ["serial_number"]
    assert [p.tag.name for p in resolved.placements] == ["voltage_a"]

    bad = site([meter("m1")], [tag("m1", "firmware", point=ModbusPoint(address=200), line=77)])
    assert messages(bad) == [
        f"{SOURCE}:77: tag m1.firmware: register firmware is ascii text, which is not served on "
        "Modbus; remove its modbus placement"
    ]


def test_overlapping_explicit_addresses_name_both_tags():
    mapping = site(
        [meter("m1")],
        [
            tag("m1", "voltage_a", point=ModbusPoint(address=200), line=11),
            tag("m1", "voltage_b", point=ModbusPoint(address=201), line=12),
        ],
        settings(),
    )
    [error] = check_modbus_map(mapping)
    assert (error.file, error.line) == (SOURCE, 12)
    assert "holding register 201 of unit id 1 overlaps tag m1.voltage_a (site.xml:11)" in str(error)


def test_the_same_address_in_different_tables_does_not_overlap():
    mapping = site(
        [meter("m1")],
        [
            tag("m1", "voltage_a", point=ModbusPoint(address=200)),
            tag("m1", "voltage_b", point=ModbusPoint(address=200, table=ModbusTable.INPUT)),
        ],
    )
    assert messages(mapping) == []


def test_overlap_with_status_registers():
    mapping = site(
        [meter("m1")], [tag("m1", "voltage_a", point=ModbusPoint(address=3), line=40)], settings()
    )
    assert messages(mapping) == [
        f"{SOURCE}:40: tag m1.voltage_a: holding register 3 of unit id 1 overlaps the status "
        f"registers of meter m1 ({SOURCE}:10)"
    ]


def test_flat_status_blocks_colliding_with_data_are_reported():
    meters = [meter(f"m{i}", line=i) for i in range(30)]  # 30 × 5 status registers pass 100
    mapping = site(meters, [tag("m0", "voltage_a", point=ModbusPoint(address=120), line=99)],
                   settings(layout="flat"))
    errors = check_modbus_map(mapping)
    assert [e.line for e in errors] == [99]
    assert "status registers of meter m24" in errors[0].message


def test_unit_id_errors():
    mapping = site(
        [meter("m1", unit_id=0, line=1), meter("m2", unit_id=248, line=2),
         meter("m3", unit_id=5, line=3), meter("m4", unit_id=5, line=4)],
        [tag("m3", "voltage_a", point=ModbusPoint(unit_id=300), line=50)],
    )
    assert messages(mapping) == [
        f"{SOURCE}:1: meter m1: modbus unit id 0 is outside 1..247",
        f"{SOURCE}:2: meter m2: modbus unit id 248 is outside 1..247",
        f"{SOURCE}:4: meter m4: modbus unit id 5 is already used by meter m3 ({SOURCE}:3)",
        f"{SOURCE}:50: tag m3.voltage_a: modbus unit id 300 is outside 1..247",
    ]


def test_more_than_247_meters_run_out_of_unit_ids():
    meters = [meter(f"m{i}", line=i) for i in range(250)]
    errors = check_modbus_map(site(meters, []))
    assert [(e.line, e.message) for e in errors] == [
        (247, "meter m247 and 2 more: no modbus unit id left; layout per-meter serves at most "
              "247 meters, use layout flat")
    ]


def test_unit_id_on_a_meter_with_flat_layout_is_an_error():
    mapping = site([meter("m1", unit_id=4, line=8)], [], settings(layout="flat"))
    assert messages(mapping) == [
        f"{SOURCE}:8: meter m1: a modbus unit id has no effect with layout flat (every meter is "
        "served under unit id 1)"
    ]


def test_addresses_beyond_65535():
    mapping = site(
        [meter("m1")],
        [
            tag("m1", "voltage_a", point=ModbusPoint(address=65535), line=20),  # float32: 2 words
            tag("m1", "voltage_b", point=ModbusPoint(address=65534), line=21),
        ],
    )
    assert messages(mapping) == [
        f"{SOURCE}:20: tag m1.voltage_a: modbus address 65535 (float32, 2 registers) is outside "
        "0..65535"
    ]
    full = site(
        [meter("m1")],
        [tag("m1", "voltage_a", line=30), tag("m1", "voltage_b", line=31)],
        settings(data_address=65532, data_type=ModbusType.FLOAT64),
    )
    assert messages(full) == [
        f"{SOURCE}:31: tag m1.voltage_b: no room for an automatic address in unit id 1 below 65535"
    ]


def test_scale_rules():
    mapping = site(
        [meter("m1")],
        [
            tag("m1", "voltage_a", point=ModbusPoint(scale=10.0), line=60),  # float32 default
            tag("m1", "voltage_b", point=ModbusPoint(scale=0.0, data_type=ModbusType.INT32), line=61),
            tag("m1", "voltage_c", point=ModbusPoint(scale=1.0), line=62),  # a no-op is fine
            tag("m1", "frequency", point=ModbusPoint(scale=100.0, data_type=ModbusType.UINT16)),
        ],
    )
    assert messages(mapping) == [
        f"{SOURCE}:60: tag m1.voltage_a: a modbus scale applies to integer types only, not "
        "float32; convert units with the tag's scale instead",
        f"{SOURCE}:61: tag m1.voltage_b: modbus scale 0.0 must be positive",
    ]


def test_types_that_do_not_fit_the_value():
    mapping = site(
        [meter("m1")],
        [
            # current is signed (s24): an unsigned type cannot hold a reverse current
            tag("m1", "current_a", point=ModbusPoint(data_type=ModbusType.UINT16), line=70),
            tag("m1", "energy_active_import_total",
                point=ModbusPoint(data_type=ModbusType.INT16), line=71),
            tag("m1", "voltage_a", point=ModbusPoint(data_type=ModbusType.UINT16), line=72),
            tag("m1", "voltage_b", point=ModbusPoint(data_type=ModbusType.UINT32), offset=-5.0,
                line=73),
            tag("m1", "energy_active_export_total",
                point=ModbusPoint(data_type=ModbusType.UINT32, scale=100.0), line=74),
        ],
    )
    assert messages(mapping) == [
        f"{SOURCE}:70: tag m1.current_a: register current_a can be negative, which uint16 "
        "cannot hold; use a signed or float type",
        f"{SOURCE}:71: tag m1.energy_active_import_total: energy counter "
        "energy_active_import_total overflows a 16-bit int16; use uint32, float32 or float64",
        f"{SOURCE}:73: tag m1.voltage_b: register voltage_b can be negative, which uint32 "
        "cannot hold; use a signed or float type",
    ]


def test_section_errors():
    mapping = site(
        [meter("m1")],
        [],
        settings(layout="grid", allow=("10.0.0.0/8", "not-a-net"), max_connections=0, port=70000),
    )
    assert messages(mapping) == [
        f"{SOURCE}:5: modbus layout 'grid' is not one of per-meter, flat",
        f"{SOURCE}:5: modbus port 70000 is outside 0..65535",
        f"{SOURCE}:5: modbus max-connections 0 must be at least 1",
        f"{SOURCE}:5: modbus allow entry 'not-a-net' is not an IP address or network",
    ]


def test_disabled_section_is_not_checked_but_resolve_still_raises():
    mapping = site([meter("m1", unit_id=0)], [], settings(enabled=False))
    assert check_modbus_map(mapping) == []
    with pytest.raises(MappingError) as info:
        resolve_modbus_map(mapping)
    assert [e.line for e in info.value.errors] == [10]


def test_unknown_registers_are_left_to_the_loader():
    mapping = site([meter("m1")], [tag("m1", "nope"), tag("ghost", "voltage_a")])
    resolved = resolve_modbus_map(mapping)
    assert resolved.placements == ()
