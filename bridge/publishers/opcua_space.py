# asyncua types ints/datetimes as NewTypes (Int32, UInt32, DateTime) and omits re-exports; checking
# every literal against them adds nothing but casts.
# mypy: disable-error-code="attr-defined,arg-type"
"""The OPC UA address space of the bridge, built from a site mapping (docs/opcua.md).

Layout under Objects: one folder per channel (or per ``ChannelConfig.group`` when
``OpcUaSettings.grouping == "group"``) → one object per meter → one variable per tag, plus a
``Diagnostics`` folder in every meter object (meter diagnostics) and in every channel folder
(channel diagnostics) — fewer with ``OpcUaSettings.diagnostics`` "meters" (no channel diagnostics)
or "none". NodeIds are stable strings equal to the TagStore keys (``<meter>.<tag>``,
``<meter>.diag.<field>``, ``channel:<channel>.<field>``) or ``TagConfig.opcua_node_id``, so a SCADA
project survives restarts and a re-ordered mapping.

All nodes are added with one ``add_nodes`` call per build (not one awaited call per node): a
1,000-meter site has ~35,000 nodes and the per-call overhead of ``Node.add_variable`` dominates.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass

from asyncua import Server, ua

from bridge.config.model import (
    ChannelConfig,
    MeterConfig,
    RegisterDef,
    RegisterFormat,
    SiteMapping,
    TagConfig,
)
from bridge.tags.keys import CHANNEL_DIAG_FIELDS, METER_DIAG_FIELDS, channel_diag_key, meter_diag_key

#: OPC UA namespace of UNECE Rec 20 unit codes (OPC 10000-8, EUInformation)
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

#: unit symbol → (UNECE Rec 20 common code, description)
UNECE_UNITS: dict[str, tuple[str, str]] = {
    "V": ("VLT", "volt"),
    "kV": ("KVT", "kilovolt"),
    "A": ("AMP", "ampere"),
    "W": ("WTT", "watt"),
    "kW": ("KWT", "kilowatt"),
    "var": ("D44", "var (volt-ampere reactive)"),
    "kvar": ("KVR", "kilovar"),
    "VA": ("D46", "volt-ampere"),
    "kVA": ("KVA", "kilovolt-ampere"),
    "Hz": ("HTZ", "hertz"),
    "Wh": ("WHR", "watt hour"),
    "kWh": ("KWH", "kilowatt hour"),
    "kvarh": ("K3", "kilovar hour"),
    "%": ("P1", "percent"),
    "°C": ("CEL", "degree Celsius"),
    "s": ("SEC", "second"),
    "ms": ("C26", "millisecond"),
}

_PY_TO_VARIANT: dict[type, ua.VariantType] = {
    float: ua.VariantType.Double,
    int: ua.VariantType.UInt32,
    bool: ua.VariantType.Boolean,
    str: ua.VariantType.String,
}

_VARIANT_TO_DATATYPE: dict[ua.VariantType, int] = {
    ua.VariantType.Double: ua.ObjectIds.Double,
    ua.VariantType.UInt32: ua.ObjectIds.UInt32,
    ua.VariantType.Int32: ua.ObjectIds.Int32,
    ua.VariantType.Boolean: ua.ObjectIds.Boolean,
    ua.VariantType.String: ua.ObjectIds.String,
}

_READ_ONLY = ua.AccessLevel.CurrentRead.mask
_WAITING = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)


def unece_unit_id(code: str) -> int:
    """The EUInformation.UnitId of a UNECE common code (OPC 10000-8 §5.6.3)."""
    unit_id = 0
    for char in code:
        unit_id = (unit_id << 8) | ord(char)
    return unit_id


def eu_information(unit: str) -> ua.EUInformation:
    """EUInformation for a unit symbol; an unknown symbol gets UnitId -1 and its own name."""
    info = ua.EUInformation()
    info.NamespaceUri = UNECE_NAMESPACE
    info.DisplayName = ua.LocalizedText(unit)
    if unit in UNECE_UNITS:
        code, description = UNECE_UNITS[unit]
        info.UnitId = unece_unit_id(code)
        info.Description = ua.LocalizedText(description)
    else:
        info.UnitId = -1
        info.Description = ua.LocalizedText(unit)
    return info


_UNSIGNED = frozenset({RegisterFormat.U8, RegisterFormat.U16, RegisterFormat.U24, RegisterFormat.U32})
_SIGNED = frozenset({RegisterFormat.S16, RegisterFormat.S24, RegisterFormat.S32})


def _tag_variant(
    mapping: SiteMapping, meter: MeterConfig, tag: TagConfig, reg: RegisterDef, unit: str
) -> ua.VariantType:
    """Double for measurements, String for text and dates, UInt32/Int32 for unscaled unitless states."""
    if not reg.is_numeric:
        return ua.VariantType.String
    unscaled = tag.scale == 1.0 and tag.offset == 0.0 and mapping.effective_scale(meter, reg.name) == 1.0
    if unscaled and not unit:
        if reg.fmt in _UNSIGNED:
            return ua.VariantType.UInt32
        if reg.fmt in _SIGNED:
            return ua.VariantType.Int32
    return ua.VariantType.Double


@dataclass(frozen=True, slots=True)
class PublishedVariable:
    """A variable node fed from one TagStore key."""

    key: str
    node_id: ua.NodeId
    variant_type: ua.VariantType


#: what identifies a node's definition: parent, browse name, class, type, data type, text, value
NodeSignature = tuple[object, ...]


@dataclass(slots=True)
class AddressSpace:
    """What a build produced: the variables by store key and every node with its signature."""

    variables: dict[str, PublishedVariable]
    nodes: dict[ua.NodeId, NodeSignature]


def unchanged_nodes(
    old: dict[ua.NodeId, NodeSignature], new: dict[ua.NodeId, NodeSignature]
) -> set[ua.NodeId]:
    """Nodes a reload can keep: same signature, and their parent kept too (``new`` is parent-first)."""
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    keep: set[ua.NodeId] = set()
    for node_id, signature in new.items():
        parent = signature[0]
        if old.get(node_id) == signature and (parent == objects or parent in keep):
            keep.add(node_id)
    return keep


def _signature(item: ua.AddNodesItem) -> NodeSignature:
    attrs = item.NodeAttributes
    data_type = getattr(attrs, "DataType", None)
    value = getattr(attrs, "Value", None)
    return (
        item.ParentNodeId,
        item.BrowseName.Name,
        item.NodeClass,
        item.TypeDefinition,
        data_type,
        attrs.Description.Text,
        repr(value.Value) if value is not None else None,
    )


class AddressSpaceBuilder:
    """Turns a SiteMapping into AddNodesItems and adds them to a server in one call."""

    def __init__(self, server: Server, namespace_index: int) -> None:
        self._server = server
        self._ns = namespace_index
        self._items: list[ua.AddNodesItem] = []
        self._variables: dict[str, PublishedVariable] = {}

    # -- public ------------------------------------------------------------------------------
    async def build(self, mapping: SiteMapping, keep: Iterable[ua.NodeId] = ()) -> AddressSpace:
        """Add the mapping's folders, meters, tags and diagnostics; nodes in ``keep`` exist already."""
        # The build allocates ~1M small objects that all live on; the cyclic GC would rescan the
        # growing heap many times over (it more than doubles the build time). The caller collects
        # and freezes once afterwards.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await self._build(mapping, set(keep))
        finally:
            if gc_was_enabled:
                gc.enable()

    def signatures(self, mapping: SiteMapping) -> dict[ua.NodeId, NodeSignature]:
        """The nodes ``mapping`` needs, parents first, with their signatures (no server call)."""
        self.plan(mapping)
        return {item.RequestedNewNodeId: _signature(item) for item in self._items}

    async def _build(self, mapping: SiteMapping, skip: set[ua.NodeId]) -> AddressSpace:
        self.plan(mapping)
        items = [item for item in self._items if item.RequestedNewNodeId not in skip]
        results = await self._server.iserver.isession.add_nodes(items)
        for item, result in zip(items, results, strict=True):
            if not result.StatusCode.is_good():
                raise RuntimeError(
                    f"OPC UA node {item.RequestedNewNodeId.to_string()} could not be added: "
                    f"{result.StatusCode.name}"
                )
        waiting = ua.DataValue(ua.Variant(None, ua.VariantType.Null), StatusCode=_WAITING)
        for var in self._variables.values():
            if var.node_id not in skip:
                await self._server.write_attribute_value(var.node_id, waiting)
        nodes = {item.RequestedNewNodeId: _signature(item) for item in self._items}
        return AddressSpace(dict(self._variables), nodes)

    def plan(self, mapping: SiteMapping) -> None:
        """Prepare the AddNodesItems of ``mapping`` (no server call)."""
        self._items.clear()
        self._variables.clear()
        objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
        tags_by_meter: dict[str, list[TagConfig]] = {}
        for tag in mapping.tags:
            tags_by_meter.setdefault(tag.meter, []).append(tag)
        folders: dict[str, ua.NodeId] = {}
        by_group = mapping.opcua.grouping == "group"
        # <opcua diagnostics>: which diagnostic nodes exist (the TagStore has them all either way;
        # values of keys without a node are simply not written, see OpcUaPublisher._apply)
        channel_diag = mapping.opcua.diagnostics == "all"
        meter_diag = mapping.opcua.diagnostics in ("all", "meters")
        for channel in mapping.channels:
            folder_name = (channel.group or channel.name) if by_group else channel.name
            folder = folders.get(folder_name)
            if folder is None:
                prefix = "group" if by_group else "channel"
                folder = self._sid(f"{prefix}:{folder_name}")
                self._folder(folder, objects, folder_name, channel.description if not by_group else "")
                folders[folder_name] = folder
            if channel_diag:
                self._channel_diagnostics(channel, folder, by_group)
            for meter in mapping.meters_on(channel.name):
                self._meter(mapping, meter, folder, tags_by_meter.get(meter.name, []), meter_diag)

    # -- node groups -------------------------------------------------------------------------
    def _channel_diagnostics(self, channel: ChannelConfig, folder: ua.NodeId, by_group: bool) -> None:
        name = f"{channel.name} Diagnostics" if by_group else "Diagnostics"
        diag = self._sid(f"channel:{channel.name}.diag")
        self._folder(diag, folder, name, f"Diagnostics of channel {channel.name}")
        for field, py_type in CHANNEL_DIAG_FIELDS.items():
            key = channel_diag_key(channel.name, field)
            self._variable(key, self._sid(key), diag, field, _PY_TO_VARIANT[py_type], "", None)

    def _meter(
        self,
        mapping: SiteMapping,
        meter: MeterConfig,
        folder: ua.NodeId,
        tags: list[TagConfig],
        diagnostics: bool,
    ) -> None:
        obj = self._sid(meter.name)
        description = meter.description or f"Milur {meter.model} at address {meter.address}"
        self._object(obj, folder, meter.name, description)
        for tag in tags:
            reg = mapping.register_of(meter, tag.register)
            unit = tag.unit if tag.unit is not None else reg.unit
            variant = _tag_variant(mapping, meter, tag, reg, unit)
            text = tag.description or reg.description
            if reg.fmt is RegisterFormat.DATETIME:
                text = text or "date/time (ISO 8601)"
            analog = variant is ua.VariantType.Double
            self._variable(
                tag.key, self._tag_node_id(tag), obj, tag.name, variant, text, unit if analog else None
            )
        if not diagnostics:
            return
        diag = self._sid(f"{meter.name}.diag")
        self._folder(diag, obj, "Diagnostics", f"Diagnostics of meter {meter.name}")
        for field, py_type in METER_DIAG_FIELDS.items():
            key = meter_diag_key(meter.name, field)
            self._variable(key, self._sid(key), diag, field, _PY_TO_VARIANT[py_type], "", None)

    def _tag_node_id(self, tag: TagConfig) -> ua.NodeId:
        if tag.opcua_node_id is None:
            return self._sid(tag.key)
        if "=" in tag.opcua_node_id:
            node_id = ua.NodeId.from_string(tag.opcua_node_id)
            # ns=2 in a mapping means "our namespace": the index is only known at run time
            return ua.NodeId(node_id.Identifier, self._ns, node_id.NodeIdType)
        return self._sid(tag.opcua_node_id)

    # -- single nodes ------------------------------------------------------------------------
    def _sid(self, text: str) -> ua.NodeId:
        return ua.NodeId(text, self._ns, ua.NodeIdType.String)

    def _folder(self, node_id: ua.NodeId, parent: ua.NodeId, name: str, description: str) -> None:
        self._add_object(node_id, parent, name, description, ua.ObjectIds.FolderType, ua.ObjectIds.Organizes)

    def _object(self, node_id: ua.NodeId, parent: ua.NodeId, name: str, description: str) -> None:
        self._add_object(
            node_id, parent, name, description, ua.ObjectIds.BaseObjectType, ua.ObjectIds.Organizes
        )

    def _add_object(
        self, node_id: ua.NodeId, parent: ua.NodeId, name: str, description: str, type_id: int, ref: int
    ) -> None:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = node_id
        item.BrowseName = ua.QualifiedName(name, self._ns)
        item.ParentNodeId = parent
        item.ReferenceTypeId = ua.NodeId(ref)
        item.NodeClass = ua.NodeClass.Object
        item.TypeDefinition = ua.NodeId(type_id)
        attrs = ua.ObjectAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.Description = ua.LocalizedText(description or name)
        attrs.EventNotifier = 0
        item.NodeAttributes = attrs
        self._items.append(item)

    def _variable(
        self,
        key: str,
        node_id: ua.NodeId,
        parent: ua.NodeId,
        name: str,
        variant: ua.VariantType,
        description: str,
        unit: str | None,
    ) -> None:
        analog = variant is ua.VariantType.Double and unit is not None
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = node_id
        item.BrowseName = ua.QualifiedName(name, self._ns)
        item.ParentNodeId = parent
        item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
        item.NodeClass = ua.NodeClass.Variable
        item.TypeDefinition = ua.NodeId(
            ua.ObjectIds.AnalogItemType if analog else ua.ObjectIds.BaseDataVariableType
        )
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.Description = ua.LocalizedText(description or name)
        attrs.DataType = ua.NodeId(_VARIANT_TO_DATATYPE[variant])
        attrs.ValueRank = ua.ValueRank.Scalar
        attrs.Value = ua.Variant(None, ua.VariantType.Null)  # Bad_WaitingForInitialData: see build()
        attrs.AccessLevel = _READ_ONLY
        attrs.UserAccessLevel = _READ_ONLY
        attrs.Historizing = False
        item.NodeAttributes = attrs
        self._items.append(item)
        self._variables[key] = PublishedVariable(key, node_id, variant)
        if unit:
            self._property(
                node_id, "EngineeringUnits", ua.Variant(eu_information(unit)), ua.ObjectIds.EUInformation
            )

    def _property(self, parent: ua.NodeId, name: str, value: ua.Variant, data_type: int) -> None:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = self._sid(f"{parent.Identifier!s}.{name}")
        item.BrowseName = ua.QualifiedName(name, 0)
        item.ParentNodeId = parent
        item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty)
        item.NodeClass = ua.NodeClass.Variable
        item.TypeDefinition = ua.NodeId(ua.ObjectIds.PropertyType)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.DataType = ua.NodeId(data_type)
        attrs.ValueRank = ua.ValueRank.Scalar
        attrs.Value = value
        attrs.AccessLevel = _READ_ONLY
        attrs.UserAccessLevel = _READ_ONLY
        item.NodeAttributes = attrs
        self._items.append(item)
