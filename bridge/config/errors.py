"""Errors found in mapping files: one ``ConfigError`` per problem, ``MappingError`` for all of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in a mapping file, with where it is.

    ``line`` is 0 when the problem has no single line (for example a missing file).
    """

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        """Render as ``file:line: message`` (``file: message`` without a line)."""
        if self.line > 0:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}: {self.message}"


class MappingError(Exception):
    """A mapping file is not usable; holds every problem found, in file order."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        """Keep the errors sorted by file and line (stable for equal lines)."""
        self.errors: list[ConfigError] = sorted(errors, key=lambda e: (e.file, e.line))
        super().__init__(str(self))

    def __str__(self) -> str:
        """One ``file:line: message`` per line."""
        return "\n".join(str(e) for e in self.errors)
