"""A small demo-like site for product tests: simulated meters on TCP, every server on a free port.

``write_site`` writes ``site.xml`` and ``site.sim`` into a folder; the mapping starts the
simulator in-process (like the demo), so a BridgeApp or ``milur-bridge run`` on it polls real
frames over loopback TCP. Tests rewrite ``site.xml`` to exercise reloads.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: tags of meter m307 in the first version of the site: tag name → register
M307_TAGS = {"Ua": "voltage_a", "F": "frequency"}


@dataclass(frozen=True)
class SitePorts:
    """Free ports for one site."""

    simulator: int
    opcua: int
    modbus: int
    status: int

    @classmethod
    def pick(cls, free_port: Callable[[], int]) -> SitePorts:
        """Four distinct free ports."""
        ports: list[int] = []
        while len(ports) < 4:
            if (port := free_port()) not in ports:
                ports.append(port)
        return cls(*ports)

    @property
    def status_url(self) -> str:
        """Base URL of the status server."""
        return f"http://127.0.0.1:{self.status}"


def site_xml(
    ports: SitePorts,
    m307_tags: Mapping[str, str] = M307_TAGS,
    *,
    status_auth: tuple[str, str] | None = None,
    opcua: bool = True,
    modbus: bool = True,
    interval: str = "1s",
    m107_password: str | None = None,
) -> str:
    """The mapping text: m307 (tags given), m107 and a 4-byte gw307 on one TCP channel."""
    tags = "\n".join(f'      <tag name="{n}" register="{r}"/>' for n, r in m307_tags.items())
    auth = f' username="{status_auth[0]}" password-hash="{status_auth[1]}"' if status_auth else ""
    password = f' password="{m107_password}"' if m107_password else ""
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<mapping name="product-test">
  <simulator spec="site.sim"/>
  <opcua enabled="{str(opcua).lower()}" endpoint="opc.tcp://127.0.0.1:{ports.opcua}/milur-bridge"
         security="None"/>
  <modbus enabled="{str(modbus).lower()}" host="127.0.0.1" port="{ports.modbus}"/>
  <status host="127.0.0.1" port="{ports.status}"{auth}/>
  <channel name="line" response-timeout="1" retries="1" description="Simulated converter">
    <tcp host="127.0.0.1" port="{ports.simulator}" connect-timeout="2"/>
    <meter name="m307" model="307" address="1" description="Input">
{tags}
    </meter>
    <meter name="m107" model="107" address="2"{password}>
      <tags all="true"/>
    </meter>
    <meter name="gw307" model="307" address="49932" address-width="4">
      <tags all="true"/>
    </meter>
  </channel>
  <poll-group name="m307" interval="{interval}" meters="m307"
              registers="{" ".join(m307_tags.values())}"/>
  <poll-group name="others" interval="{interval}" meters="m107 gw307" registers="frequency"/>
  <poll-group name="single" interval="{interval}" meters="m107" registers="voltage"/>
</mapping>
"""


def site_sim(ports: SitePorts) -> str:
    """The simulator spec: three meters behind one TCP server."""
    return f"""\
meter 307:1 serial=012000001
meter 107:2 serial=012000002
meter 307:49932 serial=012049932 width=4
tcp 127.0.0.1:{ports.simulator}
"""


def write_site(folder: Path, ports: SitePorts, **kw: Any) -> Path:
    """Write site.xml and site.sim into ``folder``; returns the mapping path."""
    (folder / "site.sim").write_text(site_sim(ports))
    path = folder / "site.xml"
    path.write_text(site_xml(ports, **kw))
    return path


def get_json(url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET a JSON document (blocking; call it from a worker thread inside async tests)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=5) as response:
        doc = json.loads(response.read())
    assert isinstance(doc, dict)
    return doc


def tag_qualities(status: Mapping[str, Any]) -> dict[str, str]:
    """``meter.tag`` → quality name, from an ``/api/status`` document."""
    return {f"{m['name']}.{t['name']}": t["quality"] for m in status["meters"] for t in m["tags"]}
