"""OPC UA security: certificates, trust list, rejected/, users and the hash-password command."""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from bridge.commands import hash_password
from bridge.config.model import OpcUaUser, Secret, SecurityPolicy
from bridge.publishers.opcua import OpcUaPublisher
from bridge.tags import TagStore

from .conftest import define_all, make_mapping, read_time, settings

pytestmark = [pytest.mark.timeout(40), pytest.mark.usefixtures("no_leftovers", "executor_closed")]

CLIENT_URI = "urn:milur-bridge:test-client"
# cheap argon2 parameters keep the test fast; verification reads them from the hash
HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
SECURE = (SecurityPolicy.BASIC256SHA256_SIGN_ENCRYPT, SecurityPolicy.AES128_SIGN_ENCRYPT)


async def _client_cert(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 — test set-up
    cert, key = directory / f"{name}.der", directory / f"{name}.pem"
    await setup_self_signed_certificate(
        key, cert, CLIENT_URI, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
    )
    return cert, key


@pytest.fixture
async def secure(endpoint: str, tmp_path: Path) -> AsyncIterator[tuple[OpcUaPublisher, TagStore, Path]]:
    """A publisher offering only signed+encrypted endpoints, one user, anonymous disabled."""
    pki = tmp_path / "pki"
    opcua = settings(
        endpoint,
        security=SECURE,
        allow_anonymous=False,
        users=(OpcUaUser("scada", Secret(HASHER.hash("s3cret-pw").encode())),),
        pki_dir=str(pki),
    )
    mapping = make_mapping(meters=1, channels=1, opcua=opcua)
    store = TagStore()
    define_all(store, mapping)
    store.set_good({"m1_1.voltage_a": 230.25}, read_time(1))
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        yield pub, store, pki
    finally:
        await pub.stop()


async def _secure_client(endpoint: str, pki: Path, cert: Path, key: Path, user: str, password: str) -> Client:
    client = Client(endpoint, timeout=5)
    client.application_uri = CLIENT_URI
    client.set_user(user)
    client.set_password(password)
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=str(cert),
        private_key=str(key),
        server_certificate=str(pki / "own" / "server_cert.der"),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


async def test_generated_certificate_and_no_none_endpoint(secure, endpoint: str) -> None:  # noqa: ANN001
    _pub, _store, pki = secure
    assert (pki / "own" / "server_cert.der").is_file() and (pki / "own" / "server_key.pem").is_file()
    client = Client(endpoint, timeout=5)
    endpoints = await client.connect_and_get_server_endpoints()
    modes = {(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode) for e in endpoints}
    assert modes == {
        ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
        ("Aes128_Sha256_RsaOaep", ua.MessageSecurityMode.SignAndEncrypt),
    }
    tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
    assert tokens == {ua.UserTokenType.UserName}  # anonymous disabled


async def test_trusted_client_with_password_reads(secure, endpoint: str, tmp_path: Path) -> None:  # noqa: ANN001
    _pub, _store, pki = secure
    cert, key = await _client_cert(tmp_path / "client", "scada-client")
    shutil.copy(cert, pki / "trusted" / cert.name)
    client = await _secure_client(endpoint, pki, cert, key, "scada", "s3cret-pw")
    async with client:
        ns = await client.get_namespace_index("urn:milur-bridge")
        node = client.get_node(ua.NodeId("m1_1.voltage_a", ns, ua.NodeIdType.String))
        assert await node.read_value() == 230.25


async def test_wrong_password_refused(secure, endpoint: str, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    _pub, _store, pki = secure
    cert, key = await _client_cert(tmp_path / "client", "scada-client")
    shutil.copy(cert, pki / "trusted" / cert.name)
    client = await _secure_client(endpoint, pki, cert, key, "scada", "wrong-guess-123")
    with pytest.raises(ua.UaStatusCodeError) as err:
        await client.connect()
    await client.disconnect()
    assert err.value.code == ua.StatusCodes.BadUserAccessDenied
    assert secure[0].metrics()["milur_opcua_refused_logins_total"] == 1
    assert "login refused for user 'scada'" in caplog.text
    assert "wrong-guess-123" not in caplog.text and "s3cret-pw" not in caplog.text


async def test_untrusted_certificate_refused_and_saved(secure, endpoint: str, tmp_path: Path) -> None:  # noqa: ANN001
    _pub, _store, pki = secure
    cert, key = await _client_cert(tmp_path / "client", "stranger")
    client = await _secure_client(endpoint, pki, cert, key, "scada", "s3cret-pw")
    with pytest.raises(ua.UaStatusCodeError) as err:
        await client.connect()
    await client.disconnect()
    assert err.value.code == ua.StatusCodes.BadCertificateUntrusted
    assert secure[0].metrics()["milur_opcua_refused_certificates_total"] >= 1
    rejected = list((pki / "rejected").iterdir())
    assert len(rejected) == 1 and rejected[0].read_bytes() == cert.read_bytes()
    # the operator moves it to trusted/: accepted without a restart
    shutil.move(str(rejected[0]), pki / "trusted" / rejected[0].name)
    client = await _secure_client(endpoint, pki, cert, key, "scada", "s3cret-pw")
    async with client:
        assert await client.get_namespace_index("urn:milur-bridge") >= 2


async def test_anonymous_refused_when_disabled(endpoint: str, tmp_path: Path) -> None:
    opcua = settings(
        endpoint,
        allow_anonymous=False,
        users=(OpcUaUser("op", Secret(HASHER.hash("pw-12345").encode())),),
        pki_dir=str(tmp_path / "pki"),
    )
    pub = OpcUaPublisher(make_mapping(meters=1, channels=1, opcua=opcua), TagStore())
    await pub.start()
    try:
        client = Client(endpoint, timeout=5)
        with pytest.raises(ua.UaStatusCodeError) as err:
            await client.connect()
        await client.disconnect()
        assert err.value.code in (ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadUserAccessDenied)
        client = Client(endpoint, timeout=5)
        client.set_user("op")
        client.set_password("pw-12345")
        async with client:
            assert await client.get_namespace_index("urn:milur-bridge") >= 2
    finally:
        await pub.stop()


def _hash_password(monkeypatch, capsys, text: str) -> tuple[int, str, str]:  # noqa: ANN001
    parser = argparse.ArgumentParser()
    hash_password.add_arguments(parser)
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = hash_password.run(parser.parse_args(["--stdin"]))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_hash_password_command(monkeypatch, capsys) -> None:  # noqa: ANN001
    # called as a module: ``milur-bridge hash-password`` discovers the same NAME/run
    assert hash_password.NAME == "hash-password"
    code, out, _err = _hash_password(monkeypatch, capsys, "correct horse\n")
    assert code == 0
    digest = out.strip()
    assert digest.startswith("$argon2id$") and "correct horse" not in digest
    assert PasswordHasher().verify(digest, "correct horse")
    code, out, err = _hash_password(monkeypatch, capsys, "\n")
    assert code == 2 and "empty" in err and out == ""
