"""mqtts:// against a real Mosquitto TLS listener that requires a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.component import State
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.mosquitto import Mosquitto, Publisher, read_history, write_config
from tests.helpers import async_wait_until


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path.with_suffix(".pem"), path.with_suffix(".key")


def make_pki(folder: Path) -> dict[str, Path]:
    """A test CA, a broker certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, _ = _write(folder / "ca", ca, ca_key)

    def leaf(name: str, san: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return _write(folder / name, builder.sign(ca_key, hashes.SHA256()), key)

    server_cert, server_key = leaf("broker", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_cert, client_key = leaf("gw-tls", [])
    return {
        "cafile": ca_file,
        "certfile": server_cert,
        "keyfile": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


def tls_connector(broker: Mosquitto, **tls: Any) -> dict[str, Any]:
    return {
        "name": "secure",
        "type": "mqtt",
        "broker": broker.url,
        "client_id": "gw-tls",
        "reconnect_max": "2s",
        **({"tls": tls} if tls else {}),
        "topics": [{"filter": "secure/+", "format": "value", "measurement": "secure", "tags_from_topic": {"s": 1}}],
    }


@pytest.fixture
def tls_broker(tmp_path: Path, mosquitto_factory: Any) -> tuple[Mosquitto, dict[str, Path]]:
    pki = make_pki(tmp_path / "pki")
    broker = mosquitto_factory(
        tls={"cafile": pki["cafile"], "certfile": pki["certfile"], "keyfile": pki["keyfile"], "require_certificate": 1}
    )
    return broker, pki


async def test_mqtts_with_ca_and_client_certificate(
    tls_broker: tuple[Mosquitto, dict[str, Path]], tmp_path: Path
) -> None:
    broker, pki = tls_broker
    assert broker.url.startswith("mqtts://127.0.0.1:")
    connector = tls_connector(
        broker, ca_file=str(pki["cafile"]), cert_file=str(pki["client_cert"]), key_file=str(pki["client_key"])
    )
    async with Gateway(load_config(write_config(tmp_path, [connector]))) as gateway:
        status = gateway.sources[0].status
        await async_wait_until(lambda: status.detail.get("subscribed"), timeout=30, message=str(status.as_dict()))
        with Publisher(broker) as publisher:  # through the broker's plain listener
            publisher.publish("secure/s1", "42.5")
            publisher.wait()
        await async_wait_until(lambda: status.counters["stored"] >= 1, timeout=30)
    assert [(v.tags, v.value) for v in read_history(tmp_path, "secure")] == [({"s": "s1"}, 42.5)]


async def test_mqtts_refuses_an_unknown_broker_certificate(
    tls_broker: tuple[Mosquitto, dict[str, Path]], tmp_path: Path
) -> None:
    broker, pki = tls_broker
    connector = tls_connector(broker, cert_file=str(pki["client_cert"]), key_file=str(pki["client_key"]))
    async with Gateway(load_config(write_config(tmp_path, [connector]))) as gateway:
        status = gateway.sources[0].status
        await async_wait_until(
            lambda: status.state is State.RECONNECTING and status.last_error, timeout=30, message="TLS refused"
        )
        assert status.last_error is not None
        assert "was not accepted" in status.last_error and "set tls.ca_file" in status.last_error, status.last_error
