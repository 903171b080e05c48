"""TLS for SIP: the one place the server context is built, and first-start certificates.

Policy (SPEC.md "Dial-in"): TLS 1.2 minimum, 1.3 preferred (OpenSSL picks the highest
both sides speak), forward-secret suites only. TLS 1.3 suites are all ephemeral; for
1.2 we allow only ECDHE/DHE key exchange with AEAD ciphers. TLS 1.2 with ECDHE has to
work: pjsua2's bundled OpenSSL and many deployed room systems cannot do 1.3.

The generated certificate is RSA 2048: several room-system generations cannot
verify ECDSA chains.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from pathlib import Path

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1:!PSK"


class CertificateError(Exception):
    """The certificate or key cannot be loaded; the message says why."""


def server_context(cert: Path, key: Path, client_ca: Path | None = None, *,
                   require_client_cert: bool = True) -> ssl.SSLContext:
    """The SIP TLS server context. With ``client_ca``, clients' certificates are checked
    against it: required, or (``require_client_cert=False``) verified only when offered."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise CertificateError(f"{exc.filename}: no such file") from None
    except ssl.SSLError as exc:
        raise CertificateError(f"{cert}/{key}: {exc.reason or exc}") from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise CertificateError(f"{client_ca}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def ensure_self_signed(cert: Path, key: Path, *, hostnames: list[str] | None = None) -> bool:
    """Write a self-signed certificate and key if neither exists. Returns True if written."""
    if cert.exists() and key.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    names = hostnames or [socket.gethostname(), "localhost"]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vtcgw self-signed")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                   x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(private_key, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True
