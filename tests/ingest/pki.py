"""Certificates for the gateway security tests, made with ``cryptography`` (valid for one day)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What OPC UA application certificates carry (Part 6, 6.2.2): signing and key encipherment.
OPCUA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=True,
    data_encipherment=True,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(
    subject: str,
    key: Any,
    issuer: tuple[str, Any] | None = None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    uri: str | None = None,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    """Self-signed unless ``issuer`` = (name, key); ``uri``: a URI subjectAltName (an OPC UA
    application URI); ``hosts``: DNS names and IP addresses in the subjectAltName (a server)."""
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    names: list[x509.GeneralName] = []
    if uri is not None:
        names.append(x509.UniformResourceIdentifier(uri))
        b = b.add_extension(OPCUA_USAGE, critical=True)
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def opcua_application(subject: str, uri: str, client: bool) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed OPC UA application instance certificate and its key."""
    key = rsa_key()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    return certificate(subject, key, usage=usage, uri=uri, hosts=("localhost", "127.0.0.1")), key


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    """PEM unless the file name ends in .der."""
    enc = serialization.Encoding.DER if path.suffix == ".der" else serialization.Encoding.PEM
    path.write_bytes(cert.public_bytes(enc))
    return path


def write_key(path: Path, key: Any, password: str | None = None) -> Path:
    """PKCS#8 PEM (DER when the name ends in .der), encrypted with ``password`` if given."""
    enc = serialization.Encoding.DER if path.suffix == ".der" else serialization.Encoding.PEM
    protect: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(enc, serialization.PrivateFormat.PKCS8, protect))
    return path
