"""Register-map templates: every register of protocol notes §6, XSD validation, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.model import RegisterFormat as F
from bridge.config.templates import (
    TEMPLATE_DIR,
    TemplateError,
    UnknownModelError,
    builtin_templates,
    load_template,
    load_template_dir,
    model_template,
    template_for_model,
)

ROOT = Path(__file__).resolve().parents[1]

# §6, single-phase: name → (register, format, scale, unit, energy)
ONE_PHASE = {
    "voltage": (1, F.U24, 0.001, "V", False),
    "current": (2, F.U24, 0.001, "A", False),
    "power_active": (3, F.S32, 0.001, "W", False),
    "energy_active_import_total": (4, F.BCD32, 0.01, "kWh", True),
    "energy_active_import_t1": (5, F.BCD32, 0.01, "kWh", True),
    "energy_active_import_t2": (6, F.BCD32, 0.01, "kWh", True),
    "energy_active_import_t3": (7, F.BCD32, 0.01, "kWh", True),
    "energy_active_import_t4": (8, F.BCD32, 0.01, "kWh", True),
    "frequency": (9, F.U16, 0.001, "Hz", False),
    "tariff_current": (10, F.U8, 1.0, "", False),
    "clock": (14, F.DATETIME, 1.0, "", False),
    "model": (32, F.ASCII, 1.0, "", False),
    "firmware": (33, F.ASCII, 1.0, "", False),
    "battery_voltage": (57, F.U16, 0.001, "V", False),
    "serial_number": (68, F.ASCII, 1.0, "", False),
    "energy_reactive_import_total": (72, F.BCD32, 0.01, "kvarh", True),
    "power_reactive": (77, F.S32, 0.001, "var", False),
    "power_apparent": (78, F.S32, 0.001, "VA", False),
    "power_factor": (80, F.S16, 0.001, "", False),
    "relay_state": (84, F.U8, 1.0, "", False),
}

THREE_PHASE = {
    "frequency": (9, F.U16, 0.001, "Hz", False),
    "model": (32, F.ASCII, 1.0, "", False),
    "firmware": (33, F.ASCII, 1.0, "", False),
    "battery_voltage": (57, F.U16, 0.001, "V", False),
    "serial_number": (68, F.ASCII, 1.0, "", False),
    **{f"voltage_{p}": (100 + i, F.U24, 0.001, "V", False) for i, p in enumerate("abc")},
    **{f"current_{p}": (103 + i, F.S24, 0.001, "A", False) for i, p in enumerate("abc")},
    **{
        f"power_active_{p}": (106 + i, F.S32, 0.01, "W", False)
        for i, p in enumerate(["a", "b", "c", "total"])
    },
    **{
        f"power_reactive_{p}": (110 + i, F.S32, 0.01, "var", False)
        for i, p in enumerate(["a", "b", "c", "total"])
    },
    **{
        f"power_apparent_{p}": (114 + i, F.U32, 0.01, "VA", False)
        for i, p in enumerate(["a", "b", "c", "total"])
    },
    "energy_active_import_total": (118, F.BCD32, 0.01, "kWh", True),
    "energy_active_import_t1": (119, F.BCD32, 0.01, "kWh", True),
    "energy_active_import_t2": (120, F.BCD32, 0.01, "kWh", True),
    "energy_reactive_import_total": (127, F.BCD32, 0.01, "kvarh", True),
    "energy_active_export_total": (149, F.BCD32, 0.01, "kWh", True),
    "energy_reactive_export_total": (159, F.BCD32, 0.01, "kvarh", True),  # [open]: or 158
}


@pytest.mark.parametrize(
    ("name", "models", "expected"),
    [("milur-1phase", ("104", "105", "107"), ONE_PHASE), ("milur-3phase", ("305", "307"), THREE_PHASE)],
)
def test_builtin_template_has_every_register_of_section_6(name, models, expected) -> None:
    template = builtin_templates()[name]
    assert template.name == name
    assert template.models == models
    assert set(template.registers) == set(expected)
    for reg_name, (number, fmt, scale, unit, energy) in expected.items():
        reg = template.registers[reg_name]
        assert (reg.name, reg.number, reg.fmt, reg.unit, reg.energy) == (
            reg_name,
            number,
            fmt,
            unit,
            energy,
        ), reg_name
        assert reg.scale == pytest.approx(scale), reg_name
        assert reg.description, reg_name
        assert reg.writable == (reg_name == "relay_state"), reg_name
        assert reg.origin.file.endswith(f"{name}.xml") and reg.origin.line > 0


def test_reg_158_alternative_is_documented_in_the_template() -> None:
    text = (TEMPLATE_DIR / "milur-3phase.xml").read_text(encoding="utf-8")
    assert "158" in text and "159" in text and "override" in text


def test_a_site_variant_can_sit_beside_the_base_without_taking_its_models(tmp_path: Path) -> None:
    # what the comment in milur-3phase.xml tells a site to do for R- on register 158
    base = (TEMPLATE_DIR / "milur-3phase.xml").read_text(encoding="utf-8")
    variant = base.replace('name="milur-3phase"', 'name="milur-3phase-r158"').replace(
        'number="159"', 'number="158"'
    )
    (tmp_path / "milur-3phase.xml").write_text(base, encoding="utf-8")
    (tmp_path / "milur-3phase-r158.xml").write_text(variant, encoding="utf-8")
    templates = {t.name: t for t in load_template_dir(tmp_path)}
    assert templates["milur-3phase-r158"].registers["energy_reactive_export_total"].number == 158
    assert templates["milur-3phase"].registers["energy_reactive_export_total"].number == 159
    assert model_template(templates.values(), "305") == "milur-3phase"


def test_duplicate_template_names_in_a_folder(tmp_path: Path) -> None:
    text = (TEMPLATE_DIR / "milur-1phase.xml").read_text(encoding="utf-8")
    (tmp_path / "a.xml").write_text(text, encoding="utf-8")
    (tmp_path / "b.xml").write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match="also used by"):
        load_template_dir(tmp_path)


@pytest.mark.parametrize(
    ("model", "template"),
    [
        ("104", "milur-1phase"),
        ("105", "milur-1phase"),
        ("107", "milur-1phase"),
        ("305", "milur-3phase"),
        (" 307 ", "milur-3phase"),
    ],
)
def test_template_for_model(model: str, template: str) -> None:
    assert template_for_model(model) == template


@pytest.mark.parametrize("model", ["107S", "307S", "", "999"])
def test_unknown_model_is_a_clear_error(model: str) -> None:
    with pytest.raises(UnknownModelError, match="known: 104, 105, 107, 305, 307"):
        template_for_model(model)


def test_builtin_templates_are_loaded_once() -> None:
    first, second = builtin_templates(), builtin_templates()
    assert first is not second  # a caller may change its dict
    assert first["milur-1phase"] is second["milur-1phase"]
    with pytest.raises(TypeError):
        first["milur-1phase"].registers["x"] = None  # type: ignore[index]


def test_mappings_templates_links_to_the_package_templates() -> None:
    link = ROOT / "mappings" / "templates"
    assert link.is_symlink()
    assert link.resolve() == TEMPLATE_DIR.resolve()
    assert {p.name for p in link.glob("*.xml")} == {"milur-1phase.xml", "milur-3phase.xml"}


GOOD_REGISTER = '<register number="1" name="voltage" format="u24" scale="0.001" unit="V"/>'


def write(tmp_path: Path, body: str, models: str = "104") -> Path:
    path = tmp_path / "site.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<template name="site" models="{models}">\n{body}\n</template>\n',
        encoding="utf-8",
    )
    return path


def test_a_site_template_loads(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_REGISTER + '\n<register number="158" name="r" format="bcd32" energy="true"/>')
    template = load_template(path)
    assert template.models == ("104",)
    assert template.registers["r"].number == 158 and template.registers["r"].energy
    assert template.registers["r"].scale == 1.0 and template.registers["r"].unit == ""
    assert template.registers["r"].origin.line == 4


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('<register number="1" name="v" format="u12"/>', 3, "u12"),
        ('<register number="256" name="v" format="u8"/>', 3, "number"),
        ('<register number="1" name="Bad Name" format="u8"/>', 3, "name"),
        ('<register number="1" name="v" format="u8" scale="0"/>', 3, "scale"),
        ('<register name="v" format="u8"/>', 3, "number"),
        ('<register number="1" name="v" format="u8" colour="red"/>', 3, "colour"),
        (GOOD_REGISTER + '\n<register number="2" name="voltage" format="u8"/>', 4, "unique"),
        (GOOD_REGISTER + '\n<register number="1" name="other" format="u8"/>', 4, "unique"),
        ('<register number="1" name="v" format="ascii" energy="true"/>', 3, "energy"),
        ('<register number="1" name="v" format="datetime" writable="true"/>', 3, "writable"),
        ("", 2, "register"),
        ('<register number="1" name="v" format="u8">', 4, "well-formed"),
    ],
)
def test_bad_templates_report_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(TemplateError) as info:
        load_template(path)
    problem = info.value.problems[0]
    assert problem.file == str(path)
    assert problem.line == line
    assert message in problem.message.lower() or message in str(info.value).lower()
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '<register number="1" name="v" format="u12"/>\n<register number="300" name="w" format="u8"/>',
    )
    with pytest.raises(TemplateError) as info:
        load_template(path)
    assert sorted({p.line for p in info.value.problems}) == [3, 4]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path / "nope.xml")


def test_models_are_required(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="models"):
        load_template(write(tmp_path, GOOD_REGISTER, models=""))
