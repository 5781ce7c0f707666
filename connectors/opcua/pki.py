"""The gateway's OPC UA certificates: its own (generated once, kept) and the servers it trusts.

Layout under ``<data_dir>/opcua/pki/`` (the usual OPC UA PKI folders)::

    own/cert.der      the gateway's application instance certificate (self-signed, 5 years)
    own/key.pem       its private key (mode 0600)
    trusted/          server certificates the gateway accepts (DER or PEM, any file name)
    rejected/         server certificates that were refused, saved so they can be reviewed and
                      copied into trusted/ — the error message gives the exact command

The own certificate is created on first use and then reused at every start, so a server
administrator trusts it once (peers that generate a new one at every restart force a new
trust every time). Only ``cryptography`` is used here; asyncua stays in ``_client.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import SourceError

__all__ = ["OwnCertificate", "Pki", "UntrustedServerCertificate", "default_application_uri"]

VALID_DAYS = 5 * 365


class UntrustedServerCertificate(SourceError):
    """The server presented a certificate that is not in the trusted folder."""

    def __init__(self, message: str, *, rejected: Path, trusted_dir: Path) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.trusted_dir = trusted_dir


@dataclass(frozen=True)
class OwnCertificate:
    certificate: Path
    private_key: Path
    application_uri: str
    created: bool


def default_application_uri(gateway_name: str) -> str:
    return f"urn:{socket.gethostname()}:shopfloor-gateway:{gateway_name}"


def _thumbprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()


def _load_any(data: bytes) -> x509.Certificate | None:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        return None


def _common_name(cert: x509.Certificate | None) -> str:
    if cert is None:
        return "server"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else "server"
    return str(value)


class Pki:
    """The certificate folders of one gateway (shared by its OPC UA connectors)."""

    def __init__(self, root: Path, trusted_dir: Path | None = None) -> None:
        self.root = root
        self.own_dir = root / "own"
        self.trusted_dir = trusted_dir or root / "trusted"
        self.rejected_dir = root / "rejected"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.own_dir.mkdir(parents=True, exist_ok=True)
        with open(self.own_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def own_certificate(self, application_uri: str) -> OwnCertificate:
        """The gateway's certificate and key, generated on first use (never replaced afterwards)."""
        cert_path = self.own_dir / "cert.der"
        key_path = self.own_dir / "key.pem"
        with self._lock():
            if cert_path.exists() and key_path.exists():
                return OwnCertificate(cert_path, key_path, _uri_of(cert_path) or application_uri, False)
            self.trusted_dir.mkdir(parents=True, exist_ok=True)
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cert = _self_signed(key, application_uri)
            _write(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
                mode=0o600,
            )
            _write(cert_path, cert.public_bytes(serialization.Encoding.DER), mode=0o644)
            return OwnCertificate(cert_path, key_path, application_uri, True)

    def check_server(self, der: bytes, endpoint: str) -> None:
        """Accept a server certificate found in the trusted folder; else save it and say what to do."""
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        thumb = _thumbprint(der)
        for path in sorted(self.trusted_dir.iterdir()):
            if not path.is_file():
                continue
            with contextlib.suppress(OSError):
                cert = _load_any(path.read_bytes())
                if cert is not None and _thumbprint(cert.public_bytes(serialization.Encoding.DER)) == thumb:
                    return
        cert = _load_any(der)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", _common_name(cert)).strip("_") or "server"
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        rejected = self.rejected_dir / f"{name}_{thumb[:16]}.der"
        if not rejected.exists():
            _write(rejected, der, mode=0o644)
        expiry = ""
        if cert is not None:
            expiry = f", valid until {cert.not_valid_after_utc:%Y-%m-%d}"
        raise UntrustedServerCertificate(
            f"the server certificate of {endpoint} is not trusted (CN={_common_name(cert)}, SHA-1 {thumb}{expiry}). "
            f"If this is the right server, trust it with:  cp {rejected} {self.trusted_dir}/",
            rejected=rejected,
            trusted_dir=self.trusted_dir,
        )


def _uri_of(cert_path: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, x509.ExtensionNotFound):
        cert = _load_any(cert_path.read_bytes())
        if cert is None:
            return None
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        return uris[0] if uris else None
    return None


def _write(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _self_signed(key: rsa.RSAPrivateKey, application_uri: str) -> x509.Certificate:
    """An application instance certificate as OPC 10000-6 6.2.2 describes it."""
    host = socket.gethostname()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"shopfloor-gateway@{host}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shopfloor-gateway"),
        ]
    )
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)]
    with contextlib.suppress(ValueError):
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
    )
    return builder.sign(private_key=key, algorithm=hashes.SHA256())
