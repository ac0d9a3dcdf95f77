# asyncua types ints/datetimes as NewTypes (Int32, UInt32, DateTime) and omits re-exports; checking
# every literal against them adds nothing but casts.
# mypy: disable-error-code="attr-defined,arg-type"
"""OPC UA security of the bridge: server certificate, client trust list, users (docs/opcua.md).

- The server certificate and key are taken from the configured files, or generated on first start
  into ``<pki_dir>/own/`` (asyncua's ``cert_gen``).
- Client certificates must be in ``<pki_dir>/trusted/``; an untrusted one is refused, logged once
  and saved into ``<pki_dir>/rejected/`` for the operator to move into ``trusted/`` (picked up on the
  next connection attempt, no restart).
- Users: anonymous (unless disabled) and username/password users checked against argon2 hashes
  (``milur-bridge hash-password``). Passwords never reach a log line.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.config.model import OpcUaSettings, OpcUaUser, SecurityPolicy

log = logging.getLogger(__name__)

#: our policy names → asyncua's
POLICY_TYPES: dict[SecurityPolicy, ua.SecurityPolicyType] = {
    SecurityPolicy.NONE: ua.SecurityPolicyType.NoSecurity,
    SecurityPolicy.BASIC256SHA256_SIGN: ua.SecurityPolicyType.Basic256Sha256_Sign,
    SecurityPolicy.BASIC256SHA256_SIGN_ENCRYPT: ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    SecurityPolicy.AES128_SIGN: ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    SecurityPolicy.AES128_SIGN_ENCRYPT: ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    SecurityPolicy.AES256_SIGN: ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    SecurityPolicy.AES256_SIGN_ENCRYPT: ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}


@dataclass(frozen=True, slots=True)
class PkiPaths:
    """The PKI directory layout."""

    root: Path

    @property
    def own(self) -> Path:
        """Server certificate and key."""
        return self.root / "own"

    @property
    def trusted(self) -> Path:
        """Trusted client certificates (and CA certificates)."""
        return self.root / "trusted"

    @property
    def rejected(self) -> Path:
        """Refused client certificates, saved for the operator."""
        return self.root / "rejected"

    def create(self) -> None:
        """Create the directories (mode 0700: the key lives here)."""
        for path in (self.own, self.trusted, self.rejected):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)


def needs_certificate(settings: OpcUaSettings) -> bool:
    """True when a policy other than None is offered."""
    return any(p is not SecurityPolicy.NONE for p in settings.security)


async def server_certificate(settings: OpcUaSettings, pki: PkiPaths) -> tuple[Path, Path]:
    """Paths of the server certificate and key: the configured files, or generated ones in own/."""
    if settings.certificate and settings.private_key:
        return Path(settings.certificate), Path(settings.private_key)
    cert, key = pki.own / "server_cert.der", pki.own / "server_key.pem"
    existed = cert.is_file() and key.is_file()  # noqa: ASYNC240 — two stat calls at start-up
    await setup_self_signed_certificate(
        key,
        cert,
        settings.application_uri,
        socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": settings.server_name, "organizationName": "milur-bridge"},
    )
    if not existed:
        log.info("OPC UA server certificate generated: %s", cert)
    return cert, key


def _thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(Encoding.DER), usedforsecurity=False).hexdigest()


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else "unnamed"
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "unnamed"


class TrustListValidator:
    """Certificate check for CreateSession: trust list in trusted/, refused ones saved in rejected/."""

    def __init__(self, pki: PkiPaths) -> None:
        self._pki = pki
        self._validator = self._make_validator(TrustStore([pki.trusted], []))
        self._logged: set[str] = set()
        self.refused = 0  # connection attempts refused (for metrics)

    @staticmethod
    def _make_validator(store: TrustStore) -> CertificateValidator:
        options = (
            CertificateValidatorOptions.TIME_RANGE
            | CertificateValidatorOptions.URI
            | CertificateValidatorOptions.TRUSTED
            | CertificateValidatorOptions.REVOKED
            | CertificateValidatorOptions.PEER_CLIENT
        )
        return CertificateValidator(options, store)

    async def load(self) -> None:
        """(Re)load the trust list; an empty trusted/ trusts nobody."""
        store = TrustStore([self._pki.trusted], [])
        try:
            await store.load()
        except ValueError:  # cryptography refuses an empty store: keep it unloaded (trusts nobody)
            store = TrustStore([self._pki.trusted], [])
        self._validator = self._make_validator(store)

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """Raise ServiceError(BadCertificate...) for a certificate we do not accept."""
        try:
            await self._validator.validate(cert, app)
            return
        except ServiceError as exc:
            if exc.code != ua.StatusCodes.BadCertificateUntrusted:
                self._refuse(cert, exc.code)
                raise
        # the operator may have moved the certificate into trusted/ since the last load
        await self.load()
        try:
            await self._validator.validate(cert, app)
        except ServiceError as exc:
            self._refuse(cert, exc.code)
            raise

    def _refuse(self, cert: x509.Certificate, code: int) -> None:
        self.refused += 1
        thumb = _thumbprint(cert)
        target = self._pki.rejected / f"{_common_name(cert)}_{thumb[:16]}.der"
        if not target.exists():
            target.write_bytes(cert.public_bytes(Encoding.DER))
        if thumb not in self._logged:  # one line per certificate, not per attempt
            self._logged.add(thumb)
            log.warning(
                "OPC UA client certificate refused (%s): CN=%s thumbprint=%s, saved as %s; "
                "move it to %s to trust it",
                _status_name(code),
                _common_name(cert),
                thumb,
                target,
                self._pki.trusted,
            )


def _status_name(code: int) -> str:
    try:
        return str(ua.StatusCode(code).name)
    except Exception:  # an unknown code still deserves a log line
        return hex(code)


class PasswordUserManager:
    """asyncua user manager: anonymous (if allowed) and argon2-verified username/password users."""

    def __init__(
        self, users: tuple[OpcUaUser, ...], allow_anonymous: bool, *, secure_only: bool = False
    ) -> None:
        """Users and anonymous access as the mapping says.

        ``secure_only``: the mapping offers no None security, so refuse every session whose secure
        channel carries no client certificate (asyncua accepts None channels anyway, for
        discovery, and would let a session on one read everything).
        """
        self._users = {u.name: u for u in users}
        self._allow_anonymous = allow_anonymous
        self._secure_only = secure_only
        self._insecure_logged = False
        self._hasher = PasswordHasher()
        self._refused: set[str] = set()
        self.refused = 0  # logins refused (for metrics)

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        """The session's user, or None to refuse it (BadUserAccessDenied)."""
        if self._secure_only and not certificate:  # None channels carry b"" (asyncua)
            self.refused += 1
            if not self._insecure_logged:
                self._insecure_logged = True
                log.warning("OPC UA session without security refused: the mapping offers no None policy")
            return None
        if username is None:
            # no X509 identity tokens are offered, so no user name means anonymous; ``certificate``
            # is then the secure channel's client certificate, already checked at CreateSession
            if self._allow_anonymous:
                return User(role=UserRole.User, name="anonymous")
            self.refused += 1
            return None
        user = self._users.get(username)
        if user is not None and password is not None and self._verify(user, password):
            self._refused.discard(username)
            return User(role=UserRole.User, name=username)
        self.refused += 1
        if username not in self._refused:  # log the first refusal of a name, never the password
            self._refused.add(username)
            log.warning("OPC UA login refused for user %r", username)
        return None

    def _verify(self, user: OpcUaUser, password: str) -> bool:
        try:
            return bool(self._hasher.verify(user.password_hash.reveal().decode(), password))
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError, UnicodeDecodeError):
            log.error(
                "OPC UA user %r has an invalid password hash (use milur-bridge hash-password)", user.name
            )
            return False


def identity_tokens(settings: OpcUaSettings) -> list[type]:
    """The identity token types offered by the endpoints."""
    tokens: list[type] = []
    if settings.allow_anonymous:
        tokens.append(ua.AnonymousIdentityToken)
    if settings.users:
        tokens.append(ua.UserNameIdentityToken)
    return tokens
