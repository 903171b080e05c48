"""TLS for SIP: the one place the server context is built, and first-start certificates.

Policy (SPEC.md "Dial-in"): TLS 1.2 minimum, 1.3 preferred (OpenSSL picks the highest
both sides speak), forward-secret suites only. TLS 1.3 suites are all ephemeral; for
1.2 we allow only ECDHE/DHE key exchange with AEAD ciphers. TLS 1.2 with ECDHE has to
work: pjsua2's bundled OpenSSL and many deployed room systems cannot do 1.3.

Two certificates, one per key type. Several room-system generations cannot verify
ECDSA chains and only speak ECDHE-RSA, so an RSA 2048 certificate is always served to
them; but an RSA signature costs about 30 times an ECDSA P-256 one (1.2 ms against
0.04 ms on one core), and every full handshake signs once. OpenSSL keeps one
certificate per key type in a context and picks, per handshake, the one whose key
fits the signature algorithms (TLS 1.3, and 1.2 ``signature_algorithms``) and the
cipher suites (TLS 1.2 ECDHE-ECDSA vs ECDHE-RSA) the client offered: clients that can
verify ECDSA get the cheap certificate, the others the RSA one. First start writes
both self-signed (``cert.pem``/``key.pem`` RSA as before, ``cert-ecdsa.pem``/
``key-ecdsa.pem`` ECDSA P-256 next to them).

Session resumption: OpenSSL's stateless session tickets stay on (TLS 1.3 sends two
tickets after each full handshake; TLS 1.2 answers the ticket extension), so a device
that reconnects with a ticket skips the certificate signature. The ticket key lives in
the context (per process: a restart or a certificate reload's new context starts
fresh tickets; old tickets then fall back to a full handshake).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1:!PSK"
# the generated second pair sits next to the first: data_dir/tls/cert-ecdsa.pem, key-ecdsa.pem
ECDSA_SUFFIX = "-ecdsa"


class CertificateError(Exception):
    """The certificate or key cannot be loaded; the message says why."""


class KeyType(enum.Enum):
    RSA = "rsa"
    ECDSA = "ecdsa"
    OTHER = "other"  # Ed25519 and friends: loadable, but no room system verifies them


def companion_paths(cert: Path, key: Path) -> tuple[Path, Path]:
    """Where the generated ECDSA pair lives, next to the generated RSA pair."""
    return (cert.with_name(cert.stem + ECDSA_SUFFIX + cert.suffix),
            key.with_name(key.stem + ECDSA_SUFFIX + key.suffix))


def certificate_key_type(cert: Path) -> KeyType:
    """The key type of the first (leaf) certificate in a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except FileNotFoundError:
        raise CertificateError(f"{cert}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{cert}: not a PEM certificate ({exc})") from None
    public = leaf.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return KeyType.RSA
    if isinstance(public, ec.EllipticCurvePublicKey):
        return KeyType.ECDSA
    return KeyType.OTHER


def load_pair(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load one certificate chain and its key into ``ctx``. A chain of a key type the
    context already holds replaces that one; another key type is added beside it."""
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise CertificateError(f"{exc.filename}: no such file") from None
    except ssl.SSLError as exc:
        raise CertificateError(f"{cert}/{key}: {exc.reason or exc}") from None


def server_context(cert: Path, key: Path, client_ca: Path | None = None, *,
                   require_client_cert: bool = True,
                   extra_certs: Sequence[tuple[Path, Path]] = ()) -> ssl.SSLContext:
    """The SIP TLS server context. With ``client_ca``, clients' certificates are checked
    against it: required, or (``require_client_cert=False``) verified only when offered.
    ``extra_certs``: more (certificate, key) pairs, each of a key type no earlier pair
    has (typically one ECDSA pair beside the RSA one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.options &= ~ssl.OP_NO_TICKET  # resumption on (the OpenSSL default; stated here)
    pairs = [(cert, key), *extra_certs]
    if len(pairs) > 1:
        check_distinct_key_types([c for c, _ in pairs])
    for c, k in pairs:
        load_pair(ctx, c, k)
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise CertificateError(f"{client_ca}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def check_distinct_key_types(certs: Sequence[Path]) -> list[KeyType]:
    """Key types of the certificates; CertificateError if two share one (the later
    would silently replace the earlier in the context)."""
    kinds = [certificate_key_type(c) for c in certs]
    for i, kind in enumerate(kinds):
        if kind in kinds[:i]:
            raise CertificateError(f"{certs[i]}: a second {kind.value} certificate "
                                   f"(after {certs[kinds.index(kind)]}); the pairs need different key types")
    return kinds


def ensure_self_signed(cert: Path, key: Path, *, hostnames: list[str] | None = None,
                       key_type: KeyType = KeyType.RSA) -> bool:
    """Write a self-signed certificate and key if neither exists. Returns True if written.
    RSA 2048 (the default) or ECDSA P-256 (``key_type=KeyType.ECDSA``)."""
    if cert.exists() and key.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    names = hostnames or [socket.gethostname(), "localhost"]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    if key_type is KeyType.ECDSA:
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = ec.generate_private_key(ec.SECP256R1())
    elif key_type is KeyType.RSA:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"cannot generate a {key_type.value} certificate")
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


def ensure_generated_pairs(cert: Path, key: Path, *, hostnames: list[str] | None = None) -> list[tuple[Path, Path]]:
    """The generated certificates of a data directory: the RSA pair at ``cert``/``key``
    (written if missing, as before) and the ECDSA pair next to it. The ECDSA pair is
    written only together with a new RSA pair (a first start): an install that already
    has an RSA certificate, perhaps imported into devices' trust stores, keeps serving
    only it until its files are removed. Returns the pairs to serve, RSA first."""
    ecdsa_cert, ecdsa_key = companion_paths(cert, key)
    if ensure_self_signed(cert, key, hostnames=hostnames):
        for p in (ecdsa_cert, ecdsa_key):
            p.unlink(missing_ok=True)  # never pair a new RSA certificate with an old ECDSA one
        ensure_self_signed(ecdsa_cert, ecdsa_key, hostnames=hostnames, key_type=KeyType.ECDSA)
    pairs = [(cert, key)]
    if ecdsa_cert.exists() and ecdsa_key.exists():
        pairs.append((ecdsa_cert, ecdsa_key))
    return pairs
