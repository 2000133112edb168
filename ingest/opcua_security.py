"""OPC UA security of a gateway: security policy and mode, its application certificate and key,
the server certificates it trusts. Checked when the configuration loads (files readable, key
matching the certificate, the application URI in the certificate), so a wrong path or a
mismatched key is a configuration error, not a connection that fails later.

Configuration (the ``security`` section of an OPC UA gateway's file)::

    security:
      policy: Basic256Sha256          # None (default) | Basic256Sha256 | Aes128_Sha256_RsaOaep
                                      # | Aes256_Sha256_RsaPss
      mode: SignAndEncrypt            # Sign | SignAndEncrypt (default with a policy)
      cert_file: /etc/millstream/opcua/gateway.der    # PEM or DER, RSA
      key_file: /etc/millstream/opcua/gateway.key     # PEM or DER (PKCS#1/PKCS#8)
      key_password: ...               # when the key is encrypted
      server_certificate: /etc/millstream/opcua/trusted/   # a file, or a folder of .der/.pem/.crt
      application_uri: urn:acme:millstream:press-hall     # default: the certificate's URI SAN

The server's certificate is trusted when it is one of ``server_certificate`` (a file or every
certificate in a folder) or was issued by one of them (a plant CA).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

Policy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
Mode = Literal["Sign", "SignAndEncrypt"]
# configuration name -> asyncua class name (asyncua.crypto.security_policies.SecurityPolicy<name>)
POLICY_CLASSES = {
    "None": "None",
    "Basic256Sha256": "Basic256Sha256",
    "Aes128_Sha256_RsaOaep": "Aes128Sha256RsaOaep",
    "Aes256_Sha256_RsaPss": "Aes256Sha256RsaPss",
}
POLICY_URI = "http://opcfoundation.org/UA/SecurityPolicy#"
CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")
_WITH_A_POLICY = ("mode", "cert_file", "key_file", "key_password", "server_certificate", "application_uri")


class OpcUaSecurity(BaseModel):
    """How the gateway secures its channel to the server (``security:`` in the file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Policy = "None"
    mode: Mode | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    server_certificate: Path | None = None
    application_uri: str | None = None

    @property
    def enabled(self) -> bool:
        return self.policy != "None"

    @property
    def message_mode(self) -> str:
        """The MessageSecurityMode name: None without a policy, SignAndEncrypt unless set."""
        return "None" if not self.enabled else self.mode or "SignAndEncrypt"

    @model_validator(mode="after")
    def _check(self) -> OpcUaSecurity:
        """Every option that needs another is there; the files are what they claim to be."""
        if not self.enabled:
            given = [f for f in _WITH_A_POLICY if getattr(self, f) is not None]
            if given:
                msg = (
                    f"{', '.join(given)} without a policy (policy None: no signing, no encryption); "
                    "set policy: Basic256Sha256 (or Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss)"
                )
                raise ValueError(msg)
            return self
        missing = [f for f in ("cert_file", "key_file", "server_certificate") if getattr(self, f) is None]
        if missing:
            msg = (
                f"policy {self.policy} needs {', '.join(missing)} (cert_file, key_file: the gateway's "
                "application certificate and its private key; server_certificate: the server's "
                "certificate or a folder of trusted certificates)"
            )
            raise ValueError(msg)
        problems = []
        try:
            cert = self.certificate()
            key = self.private_key()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if _public_der(key) != _public_der(cert):
            problems.append(f"key_file {self.key_file} is not the private key of cert_file {self.cert_file}")
        uris = certificate_uris(cert)
        if not uris:
            problems.append(
                f"cert_file {self.cert_file} has no URI in its subjectAltName: OPC UA servers need the "
                "gateway's application URI there (openssl: -addext subjectAltName=URI:urn:...; see "
                "docs/gateways.md)"
            )
        elif self.application_uri is not None and self.application_uri not in uris:
            problems.append(
                f"application_uri {self.application_uri!r} is not in the subjectAltName of cert_file "
                f"{self.cert_file} ({', '.join(uris)}); servers refuse such a client "
                "(BadCertificateUriInvalid): leave application_uri out to use the certificate's"
            )
        now = datetime.now(UTC)
        if cert.not_valid_after_utc < now:
            expired = f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            problems.append(f"cert_file {self.cert_file} expired on {expired}")
        try:
            self.trusted()
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ------------------------------------------------------------------------------------ files
    def certificate(self) -> Any:
        """The gateway's certificate (cryptography x509.Certificate)."""
        return _load_certificate(_read(self.cert_file, "cert_file"), f"cert_file {self.cert_file}")

    def private_key(self) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        data = _read(self.key_file, "key_file")
        password = self.key_password.get_secret_value().encode() if self.key_password else None
        where = f"key_file {self.key_file}"
        pem = b"-----BEGIN" in data
        load = serialization.load_pem_private_key if pem else serialization.load_der_private_key
        try:
            key = load(data, password=password)
        except TypeError as exc:  # encrypted without a password, or a password for a plain key
            hint = "set key_password" if password is None else "remove key_password"
            msg = f"{where}: {exc} ({hint})"
            raise ValueError(msg) from None
        except ValueError as exc:
            wrong = " or key_password is wrong" if password is not None else ""
            msg = f"{where} is not a PEM or DER private key{wrong} ({exc})"
            raise ValueError(msg) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            kind = type(key).__name__.lstrip("_")
            msg = f"{where} is a {kind}, not an RSA key (OPC UA security policies use RSA)"
            raise ValueError(msg)
        return key

    def application_uri_of(self, cert: Any) -> str:
        """``application_uri`` or else the certificate's first URI subjectAltName."""
        return self.application_uri or certificate_uris(cert)[0]

    def trusted(self) -> list[Any]:
        """The certificates of ``server_certificate`` (a file, or every certificate in a folder)."""
        path = self.server_certificate
        assert path is not None
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES and p.is_file())
            if not files:
                msg = f"server_certificate: folder {path} holds no certificate ({', '.join(CERT_SUFFIXES)})"
                raise ValueError(msg)
        else:
            files = [path]
        return [_load_certificate(_read(f, "server_certificate"), f"server_certificate {f}") for f in files]

    def trust_problem(self, der: bytes) -> str | None:
        """Why the server certificate ``der`` is not trusted; None when it is."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature

        cert = x509.load_der_x509_certificate(der)
        try:
            anchors = self.trusted()  # read at each connection: a renewed certificate needs no restart
        except ValueError as exc:  # the folder was emptied or a file replaced since the start
            return str(exc)
        for anchor in anchors:
            if anchor == cert:
                return None
            try:
                cert.verify_directly_issued_by(anchor)
            except (InvalidSignature, ValueError, TypeError):  # not its issuer, another key type
                continue
            return None
        return (
            f"the server's certificate ({describe(cert)}) is not trusted: it is not in "
            f"server_certificate {self.server_certificate} nor issued by a certificate there "
            "(save the server's certificate there)"
        )

    def client_credentials(self) -> tuple[bytes, bytes]:
        """(certificate, private key) as DER, for asyncua (which guesses PEM/DER from a file name)."""
        from cryptography.hazmat.primitives import serialization

        cert_der = self.certificate().public_bytes(serialization.Encoding.DER)
        key_der = self.private_key().private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert_der, key_der


def certificate_uris(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def describe(cert: Any) -> str:
    """``CN=PLC-7, SHA-1 thumbprint 9A:3F:...`` (the thumbprint servers and UaExpert show)."""
    from cryptography.hazmat.primitives import serialization

    der = cert.public_bytes(serialization.Encoding.DER)
    thumb = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    pairs = ":".join(thumb[i : i + 2] for i in range(0, 40, 2))
    return f"{cert.subject.rfc4514_string()}, SHA-1 thumbprint {pairs}"


def _read(path: Path | None, field: str) -> bytes:
    assert path is not None
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"{field} {path}: cannot read it: {exc.strerror or exc}"
        raise ValueError(msg) from None


def _load_certificate(data: bytes, where: str) -> Any:
    from cryptography import x509

    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        msg = f"{where} is not a PEM or DER certificate ({exc})"
        raise ValueError(msg) from None


def _public_der(obj: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        obj.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
