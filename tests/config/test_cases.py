"""The broken-mapping corpus: ``cases/<name>.xml`` with ``cases/<name>.expected``.

Each line of an ``.expected`` file is ``<name>.xml:LINE: TEXT``. Every expected line must match a
different reported error (same file and line, TEXT a substring of the message), and nothing else
may be reported: a case fails on a missing error and on an unexpected one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.errors import ConfigError
from bridge.config.loader import MappingError, load_mapping

CASES = Path(__file__).with_name("cases")
NAMES = sorted(p.stem for p in CASES.glob("*.xml"))


def _expected(name: str) -> list[tuple[str, int, str]]:
    rows = []
    for raw in (CASES / f"{name}.expected").read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        file, line, text = raw.split(":", 2)
        rows.append((file, int(line), text.strip()))
    return rows


def _matches(error: ConfigError, row: tuple[str, int, str]) -> bool:
    file, line, text = row
    return Path(error.file).name == file and error.line == line and text in error.message


def test_the_corpus_is_big_enough() -> None:
    assert len(NAMES) >= 15
    assert all((CASES / f"{n}.expected").is_file() for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_case(name: str) -> None:
    with pytest.raises(MappingError) as info:
        load_mapping(CASES / f"{name}.xml")
    errors = list(info.value.errors)
    shown = "\n".join(str(e) for e in errors)
    unmatched = list(errors)
    for row in _expected(name):
        hit = next((e for e in unmatched if _matches(e, row)), None)
        assert hit is not None, f"expected {row} among:\n{shown}"
        unmatched.remove(hit)
    assert not unmatched, "unexpected errors:\n" + "\n".join(map(str, unmatched))
    # the exception's text is one file:line: message per error
    assert str(info.value).splitlines() == [str(e) for e in errors]
