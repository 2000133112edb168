"""The configuration file of an OPC UA gateway (``millstream gateway opcua --config FILE``), checked
when it loads: every node's plant/line, address (node id syntax, namespace aliases) and static unit,
and the endpoint's scheme. See :mod:`ingest.opcua` for an example."""

from __future__ import annotations

import string

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ingest.opcua_security import OpcUaSecurity
from ingest.validation import ValidationConfig


class NodeMapping(BaseModel):
    """One OPC UA variable and the reading it becomes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_id: str | None = None
    browse_path: str | None = None
    plant: str | None = None
    line: str | None = None
    machine: str
    sensor: str
    unit: str

    @model_validator(mode="after")
    def _one_address(self) -> NodeMapping:
        if (self.node_id is None) == (self.browse_path is None):
            msg = f"{self.machine}/{self.sensor}: give exactly one of node_id and browse_path"
            raise ValueError(msg)
        return self


def node_id_problem(node_id: str, namespaces: dict[str, str]) -> str | None:
    """Why ``node_id`` (with ``{alias}`` placeholders) cannot be used; None when it is fine."""
    from asyncua import ua
    from asyncua.ua.uaerrors import UaError

    declared = ", ".join(namespaces) or "none"
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(node_id) if f is not None]
        undeclared = [f for f in names if f not in namespaces]
        if undeclared:
            return (
                f"node id {node_id!r}: namespace alias {{{undeclared[0]}}} is not declared in namespaces "
                f"(declared: {declared})"
            )
        resolved = node_id.format_map(dict.fromkeys(namespaces, "1"))
    except ValueError as exc:  # unbalanced braces, a format spec
        return f"node id {node_id!r}: {exc} (write {{{{ and }}}} for a literal brace)"
    try:
        nid = ua.NodeId.from_string(resolved)
    except UaError as exc:
        return (
            f"node id {node_id!r} is not an OPC UA node id ({exc}); "
            "forms: ns=2;s=Name, ns=2;i=42, ns=2;g=GUID, ns=2;b=BASE64, ns={alias};s=Name"
        )
    if isinstance(nid, ua.ExpandedNodeId) and (nid.NamespaceUri or nid.ServerIndex):
        return (
            f"node id {node_id!r}: nsu=/srv= forms are not supported; declare the URI in namespaces "
            "and write ns={alias}"
        )
    return None


def browse_path_problem(path: str, namespaces: dict[str, str]) -> str | None:
    """Why a browse path (``0:Objects/alias:Name/...``) cannot be used; None when it is fine."""
    for element in path.strip("/").split("/"):
        ns, sep, _ = element.partition(":")
        if sep and not ns.isdigit() and ns not in namespaces:
            declared = ", ".join(namespaces) or "none"
            return (
                f"browse path {path!r}: {ns!r} is neither a namespace index nor an alias declared in "
                f"namespaces (declared: {declared})"
            )
    return None


class OpcUaConfig(BaseModel):
    """The configuration file of an OPC UA gateway (without the spool/producer sections)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_id: str = "opcua-1"
    endpoint: str
    plant: str | None = None
    line: str | None = None
    namespaces: dict[str, str] = Field(default_factory=dict)
    publishing_interval_ms: float = Field(100.0, gt=0)
    sampling_interval_ms: float = Field(0.0, ge=0)
    queue_size: int = Field(1000, ge=1)
    client_queue: int = Field(200_000, ge=100)
    request_timeout_s: float = Field(4.0, gt=0)
    watchdog_interval_s: float = Field(1.0, gt=0)
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    username: str | None = None
    password: SecretStr | None = None
    security: OpcUaSecurity = Field(default_factory=OpcUaSecurity)
    nodes: list[NodeMapping] = Field(min_length=1)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.lower().startswith("opc.tcp://"):
            msg = (
                f"{v!r} is not an opc.tcp:// URL (OPC UA binary over TCP, e.g. opc.tcp://10.0.0.5:4840/; "
                "HTTPS and WebSocket endpoints are not supported)"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _check_nodes(self) -> OpcUaConfig:
        """Every node: plant and line known, address usable, static unit accepted by validation.
        All problems at once, one line each."""
        problems = []
        for i, n in enumerate(self.nodes):
            where = f"nodes[{i}] ({n.machine}/{n.sensor})"
            if (n.plant or self.plant) is None or (n.line or self.line) is None:
                problems.append(f"{where}: no plant/line (set them on the node or at the top level)")
            if n.node_id is not None:
                address = node_id_problem(n.node_id, self.namespaces)
            else:
                address = browse_path_problem(n.browse_path or "", self.namespaces)
            unit = self.validation.static_unit_problem(n.unit, n.sensor)
            problems.extend(f"{where}: {p}" for p in (address, unit) if p is not None)
        if problems:
            raise ValueError("\n".join(problems))
        return self
