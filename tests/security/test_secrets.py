"""Secrets never leak: one run of the whole bridge, every output grepped for the configured secrets.

The site has a meter with a non-default password (polled), a meter configured with a wrong one
(refused: §3, tried once), an OPC UA user and a status page user. Through a run at DEBUG level —
wrong and right logins on OPC UA and on the status page, a reload through the API, a reload with a
broken file — and through the commands (validate, modbus-map, tags) on the good and on broken
mappings, none of these outputs may contain a meter password (in any hex spelling or as raw
bytes), a plain user password, or a password hash: logs, error messages, the status page and its
API, the metrics, the mapping's repr, the command outputs.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua
from faults.bridge_rig import (
    ChannelSpec,
    MeterSpec,
    SiteSpec,
    healthy_and_moving,
    running_bridge,
    tcp,
    wait_for,
)

from bridge.config.loader import MappingError, load_mapping
from bridge.simulator import SimulatedBus, SimulatedMeter, TcpMeterServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_leftovers")]

EXE = Path(sys.executable).parent / "milur-bridge"
METER_PW = "5A17C3E90B4D"  # the right password of meter "locked"
WRONG_PW = "C0FFEE15BAD1"  # configured for meter "refused", whose real password is the factory one
OPC_PW = "Opc-Plain-Secret-4711"
STATUS_PW = "Status-Plain-Secret-0815"
HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # cheap for the test


def spellings(hex_password: str) -> list[str]:
    """Every way a 6-byte password could show up in text."""
    raw = bytes.fromhex(hex_password)
    spaced = " ".join(f"{b:02x}" for b in raw)
    return [
        hex_password.upper(), hex_password.lower(), spaced, spaced.upper(),
        repr(raw)[2:-1],  # b'Z\x17\xc3...' as Python prints it
        "".join(f"\\x{b:02x}" for b in raw),
        str(list(raw))[1:-1],  # 90, 23, 195, ...
    ]


def forbidden(hashes: list[str]) -> list[str]:
    return [*spellings(METER_PW), *spellings(WRONG_PW), OPC_PW, STATUS_PW, *hashes]


def assert_clean(what: str, text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"{what} shows {leaked}"


def milur_bridge(*args: str) -> str:
    done = subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=60, check=False)
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


async def test_no_secret_in_any_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    opc_hash, status_hash = HASHER.hash(OPC_PW), HASHER.hash(STATUS_PW)
    secrets = forbidden([opc_hash, status_hash])
    locked = SimulatedMeter("105", 1, password=bytes.fromhex(METER_PW))
    refused = SimulatedMeter("105", 2)
    path = tmp_path / "site.xml"
    async with TcpMeterServer(SimulatedBus([locked, refused])) as gw:
        spec = SiteSpec(
            [ChannelSpec("gw", tcp(gw.port), [
                MeterSpec("locked", 1, attrs=f'password="{METER_PW}"'),
                MeterSpec("refused", 2, attrs=f'password="{WRONG_PW}"'),
            ])],
            opcua_users=f'<user name="scada" password-hash="{opc_hash}"/>',
            status_attrs=f'username="ops" password-hash="{status_hash}"',
        )
        outputs: dict[str, str] = {}
        async with running_bridge(path, spec) as app:
            outputs["mapping repr"] = repr(app.mapping)
            await healthy_and_moving(app, spec.endpoint, ["locked"])
            await wait_for(_async(lambda: (tv := app.store.get("refused.diag.state")) is not None
                                  and tv.value == "auth_failed"), 10, "refused meter auth_failed")
            assert refused.counters.wrong_passwords == 1  # tried once, never again (§3 lockout)

            # OPC UA: a wrong password, then the right one
            for password, ok in (("Wrong-Guess-123", False), (OPC_PW, True)):
                client = Client(spec.endpoint, timeout=5)
                client.set_user("scada")
                client.set_password(password)
                if ok:
                    async with client:
                        assert await client.get_namespace_index("urn:milur-bridge") >= 2
                else:
                    with pytest.raises(ua.UaStatusCodeError):
                        await client.connect()
                    await client.disconnect()

            # the status page: refused without and with wrong credentials, then every page
            assert app.status is not None
            base = f"http://127.0.0.1:{app.status.port}"
            async with aiohttp.ClientSession() as http:
                for auth in (None, aiohttp.BasicAuth("ops", "nope"), aiohttp.BasicAuth("ops", OPC_PW)):
                    async with http.get(f"{base}/api/status", auth=auth) as r:
                        assert r.status == 401
                        outputs[f"status refusal {auth}"] = await r.text()
                good = aiohttp.BasicAuth("ops", STATUS_PW)
                for page in ("/", "/api/status", "/metrics", "/health"):
                    async with http.get(base + page, auth=good) as r:
                        assert r.status == 200, page
                        outputs[f"status {page}"] = await r.text()
                async with http.post(f"{base}/api/reload", auth=good) as r:
                    outputs["reload API"] = await r.text()
                    assert r.status == 200, outputs["reload API"]

            # reloads with broken files: a near-miss password; a schema error beside the password
            for n, (broken, word) in enumerate((
                (spec.xml().replace(f'password="{METER_PW}"', f'password="{METER_PW}0"'), "password"),
                (spec.xml().replace("<poll-group ", "<poll-group bogus='1' ", 1), "bogus"),
            )):
                path.write_text(broken)  # noqa: ASYNC240
                ok, problems = await app.reload()
                assert not ok and any(word in p for p in problems), problems
                outputs[f"reload errors {n}"] = "\n".join(problems)
            path.write_text(spec.xml())  # noqa: ASYNC240
            await healthy_and_moving(app, spec.endpoint, ["locked"])
            outputs["metrics"] = app.metrics.render().decode()
        # the bridge's records; the test's own asyncua client logs what it sends, password included
        bridge_records = [r for r in caplog.records if not r.name.startswith("asyncua.client")]
        outputs["log"] = "\n".join(
            f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in bridge_records
        )

    # the commands, on the good file and on broken ones
    def commands() -> None:
        outputs["validate"] = milur_bridge("validate", str(path))
        for fmt in ("markdown", "csv"):
            outputs[f"modbus-map {fmt}"] = milur_bridge("modbus-map", "--format", fmt, str(path))
        for fmt in ("text", "csv"):
            outputs[f"tags {fmt}"] = milur_bridge("tags", "--format", fmt, str(path))
        for n, bad in enumerate((f'password="{METER_PW}0"', f'password="{METER_PW[:-1]}"',
                                 f'password="{METER_PW[:-2]}ZZ"')):
            bad_path = tmp_path / f"bad{n}.xml"
            bad_path.write_text(spec.xml().replace(f'password="{METER_PW}"', bad))
            outputs[f"validate bad{n}"] = milur_bridge("validate", str(bad_path))
            assert "password" in outputs[f"validate bad{n}"], outputs[f"validate bad{n}"]
            with pytest.raises(MappingError) as err:
                load_mapping(bad_path)
            outputs[f"MappingError bad{n}"] = f"{err.value}\n{err.value!r}"

    await asyncio.to_thread(commands)
    assert "exit 0" in outputs["validate"] and "locked" in outputs["tags text"]
    # the outputs are the real thing: the refusals were logged, the pages carry the site
    assert "login refused for user 'scada'" in outputs["log"]
    assert "meter refused" in outputs["log"] and "locked" in outputs["status /api/status"]
    for what, text in outputs.items():
        assert_clean(what, text, secrets)


def test_the_check_can_fail() -> None:
    """The grep is not vacuous: a frame with the password in it is caught in every spelling."""
    from bridge.protocol.milur import Address, open_session_request

    frame = open_session_request(Address(1, 1), 1, bytes.fromhex(METER_PW)).encode()
    for text in (frame.hex(), frame.hex(" "), repr(frame), str(list(frame))):
        with pytest.raises(AssertionError):
            assert_clean("frame", text, forbidden([]))


def _async(predicate):  # noqa: ANN001, ANN202
    async def check() -> bool:
        return bool(predicate())

    return check
