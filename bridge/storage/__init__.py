"""Storage of readings and meter archives (docs/storage.md).

``ReadingStore`` is the storage-agnostic interface, ``SqliteReadingStore`` its SQLite
implementation, ``StoreRecorder`` the TagStore listener that feeds it and restores last values.
"""

from bridge.storage.model import (
    PROFILE_CHANNELS,
    ArchiveKind,
    ArchiveRecord,
    Reading,
    ReadingStore,
    StorageError,
    TagClass,
)
from bridge.storage.recorder import StoreRecorder, stored_tags
from bridge.storage.sqlite import SqliteReadingStore

__all__ = [
    "PROFILE_CHANNELS",
    "ArchiveKind",
    "ArchiveRecord",
    "Reading",
    "ReadingStore",
    "SqliteReadingStore",
    "StorageError",
    "StoreRecorder",
    "TagClass",
    "stored_tags",
]
