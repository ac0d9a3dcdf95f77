"""The tag store: the single hub between polling and the publishers."""

from bridge.tags.model import Quality, TagChange, TagValue
from bridge.tags.store import TagListener, TagStore

__all__ = ["Quality", "TagChange", "TagListener", "TagStore", "TagValue"]
