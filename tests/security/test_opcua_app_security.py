"""OPC UA security of a running bridge configured from a mapping file.

tests/opcua/test_opcua_security.py checks the publisher on its own; here the same rules are
checked end to end, from the XML attributes (``security``, ``allow-anonymous``, ``<user>``,
``pki-dir``) to a client reading a live, polled value: only the configured endpoints exist (no
None endpoint), anonymous and wrong passwords are refused, an untrusted certificate is refused,
and a trusted client with the right password reads a Good value.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID
from faults.bridge_rig import NAMESPACE, ChannelSpec, MeterSpec, SiteSpec, running_bridge, tcp, wait_for

from bridge.simulator import SimulatedBus, SimulatedMeter, TcpMeterServer

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftovers")]

CLIENT_URI = "urn:milur-bridge:security-test-client"
PASSWORD = "Sc4da-Passw0rd"
HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


async def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 — test set-up
    cert, key = directory / f"{name}.der", directory / f"{name}.pem"
    await setup_self_signed_certificate(
        key, cert, CLIENT_URI, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
    )
    return cert, key


async def _secure_client(endpoint: str, pki: Path, cert: Path, key: Path, password: str) -> Client:
    client = Client(endpoint, timeout=5)
    client.application_uri = CLIENT_URI
    client.set_user("scada")
    client.set_password(password)
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=str(cert),
        private_key=str(key),
        server_certificate=str(pki / "own" / "server_cert.der"),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


async def _refused(client: Client) -> int:
    with pytest.raises(ua.UaStatusCodeError) as err:
        await client.connect()
    await client.disconnect()
    return int(err.value.code)


async def test_secure_only_site(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    meter = SimulatedMeter("105", 1)
    async with TcpMeterServer(SimulatedBus([meter])) as gw:
        spec = SiteSpec(
            [ChannelSpec("gw", tcp(gw.port), [MeterSpec("m1", 1)])],
            opcua_attrs=f'security="Basic256Sha256_SignAndEncrypt" allow-anonymous="false" '
                        f'pki-dir="{pki}"',
            opcua_users=f'<user name="scada" password-hash="{HASHER.hash(PASSWORD)}"/>',
        )
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            endpoints = await Client(spec.endpoint, timeout=5).connect_and_get_server_endpoints()
            modes = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
            assert modes == {("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)}, modes
            tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
            assert tokens == {ua.UserTokenType.UserName}

            # None security is not offered. asyncua still opens None channels (for discovery) and
            # its client checks the endpoint list itself: skip that check, as a hostile client
            # would, and log in with the right password over None: refused (regression)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(Client, "find_endpoint", staticmethod(lambda eps, mode, uri: list(eps)[0]))
                plain = Client(spec.endpoint, timeout=5)
                plain.set_user("scada")
                plain.set_password(PASSWORD)
                assert await _refused(plain) == ua.StatusCodes.BadUserAccessDenied
                assert await _refused(Client(spec.endpoint, timeout=5)) in (
                    ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadUserAccessDenied,
                )

            cert, key = await _certificate(tmp_path / "client", "scada-client")
            # untrusted certificate: refused, kept in rejected/ for the operator
            code = await _refused(await _secure_client(spec.endpoint, pki, cert, key, PASSWORD))
            assert code == ua.StatusCodes.BadCertificateUntrusted
            assert [p.name for p in (pki / "rejected").iterdir()]
            shutil.copy(cert, pki / "trusted" / cert.name)
            # trusted, wrong password: refused
            code = await _refused(await _secure_client(spec.endpoint, pki, cert, key, "guess-123"))
            assert code == ua.StatusCodes.BadUserAccessDenied
            # trusted, anonymous (no user): refused
            anonymous = await _secure_client(spec.endpoint, pki, cert, key, PASSWORD)
            anonymous.set_user("")
            anonymous._password = None
            assert await _refused(anonymous) in (
                ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadUserAccessDenied,
                ua.StatusCodes.BadIdentityTokenInvalid,
            )
            # trusted, right password: a live value
            client = await _secure_client(spec.endpoint, pki, cert, key, PASSWORD)
            async with client:
                ns = await client.get_namespace_index(NAMESPACE)
                node = client.get_node(ua.NodeId("m1.voltage", ns, ua.NodeIdType.String))

                async def good() -> bool:
                    return (await node.read_data_value(raise_on_bad_status=False)).StatusCode.is_good()

                await wait_for(good, 10, "m1.voltage Good over the secure channel")
            assert app.opcua is not None
            refused = app.opcua.metrics()
            assert refused["milur_opcua_refused_logins_total"] >= 1, refused
            assert refused["milur_opcua_refused_certificates_total"] >= 1, refused
