"""`vtcprobe ports HOST`: can a room system reach the gateway, and is its TLS right?

1. TCP connect to the signalling ports (SIP/TLS 5061, H.323 1720, SIP 5060 if asked).
2. TLS on the SIP/TLS port, against SPEC.md ("TLS 1.2 required, TLS 1.3 preferred;
   forward-secret suites only"): a default handshake (what a modern client gets), then
   one handshake per protocol version offered alone (1.3 and 1.2 must succeed, 1.1 and
   1.0 must be refused), and a TLS 1.2 handshake offering only RSA key exchange (no
   forward secrecy) that must be refused. The certificate: subject, issuer, chain (via
   the `openssl` binary when present), expiry, whether the name we dialled matches,
   whether it verifies against the system (or given) CA bundle.
   If this machine's OpenSSL cannot even offer TLS 1.0/1.1, that check is reported as
   "not testable here", never as a pass.
3. UDP reachability of the media ranges through the gateway's probe reflector: the
   probe asks the reflector (token-authenticated) to listen briefly on sampled ports
   of each range, then sends a signed echo request to each. An answer from port P
   proves that UDP from this host reached the gateway on P and the answer from P came
   back (inbound rule and return path for that 5-tuple); ports not sampled are not
   proven, and a port the reflector could not open (in use by a call, outside its
   allowed range) is reported as such, not as reachable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from gateway.reflector import (
    HEADER_SIZE,
    MAX_OPEN_PORTS,
    Kind,
    ProbeBlock,
    build_probe,
    port_list,
    verify_answer,
)
from probes.common import Check, Op, ProbeError, ProbeResult, Progress, checks_table, table

FS_KX = ("ECDHE", "DHE")
NON_FS_CIPHERS = "kRSA:@SECLEVEL=0"


@dataclass(frozen=True, slots=True, kw_only=True)
class PortsOptions:
    host: str
    sip_tls_port: int = 5061
    h323_port: int = 1720
    sip_tcp_port: int | None = None
    server_name: str | None = None
    ca_file: str | None = None
    timeout_s: float = 3.0
    min_cert_days: int = 14
    reflector_port: int | None = None
    token: str | None = None
    media_ranges: tuple[tuple[str, int, int], ...] = (("sip-media", 10000, 60000), ("h323-media", 5100, 6200))
    samples: int = 8
    seed: int | None = None


# ---------------------------------------------------------------------------- TCP


async def tcp_connect(host: str, port: int, timeout: float) -> dict[str, Any]:
    t = time.monotonic()
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return {"port": port, "state": "timeout", "connect_ms": None}
    except ConnectionRefusedError:
        return {"port": port, "state": "refused", "connect_ms": None}
    except OSError as exc:
        return {"port": port, "state": f"error: {exc.strerror or exc}", "connect_ms": None}
    ms = (time.monotonic() - t) * 1000
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass
    return {"port": port, "state": "open", "connect_ms": round(ms, 2)}


# ---------------------------------------------------------------------------- TLS


def _client_ctx(*, version: ssl.TLSVersion | None = None, ciphers: str | None = None,
                verify: bool = False, ca_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.check_hostname = False  # name matching is reported separately
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        if version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(host: str, port: int, ctx: ssl.SSLContext, sni: str | None,
              timeout: float) -> dict[str, Any]:
    """One handshake; returns what was negotiated or why it failed."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return {"ok": False, "error": f"tcp: {exc.strerror or exc}", "local": False}
    try:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            cipher = s.cipher()
            return {"ok": True, "version": s.version(), "cipher": cipher[0] if cipher else None,
                    "bits": cipher[2] if cipher else None, "der": s.getpeercert(binary_form=True)}
    except ssl.SSLCertVerificationError as exc:
        return {"ok": False, "error": exc.verify_message or exc.reason or str(exc), "local": False}
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        # our side could not offer the requested protocol at all
        local = reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_CIPHER_MATCH")
        return {"ok": False, "error": reason, "local": local}
    except (OSError, TimeoutError) as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__, "local": False}
    finally:
        raw.close()


def forward_secret(version: str | None, cipher: str | None) -> bool:
    if version == "TLSv1.3":
        return True  # every TLS 1.3 key exchange is (EC)DHE
    return bool(cipher) and cipher.startswith(FS_KX) or bool(cipher and "-ECDHE-" in cipher)


def _names(cert: Any) -> tuple[list[str], list[str]]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        return [], []


def name_matches(name: str, dns: list[str], ips: list[str]) -> bool:
    """RFC 6125: IP literals against IP SANs; names against DNS SANs, '*' as the whole left label."""
    try:
        ip = ipaddress.ip_address(name)
        return any(ipaddress.ip_address(x) == ip for x in ips)
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    for pat in dns:
        pat = pat.lower().rstrip(".")
        if pat == name:
            return True
        if pat.startswith("*.") and "." in name and name.split(".", 1)[1] == pat[2:]:
            return True
    return False


def describe_cert(der: bytes, name: str, now: dt.datetime) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_der_x509_certificate(der)
    dns, ips = _names(cert)
    not_after = cert.not_valid_after_utc
    key = cert.public_key()
    key_desc = (f"RSA {key.key_size}" if isinstance(key, rsa.RSAPublicKey)
                else f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey)
                else type(key).__name__)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "self_signed": cert.subject == cert.issuer,
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": (not_after - now).days,
        "key": key_desc,
        "signature": cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else None,
        "dns_names": dns,
        "ip_addresses": ips,
        "name_checked": name,
        "name_matches": name_matches(name, dns, ips),
    }


def chain_via_openssl(host: str, port: int, sni: str | None, timeout: float) -> list[dict[str, str]] | None:
    """The chain the server sends (subject/issuer per certificate), if `openssl` exists."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    args = [exe, "s_client", "-connect", f"{host}:{port}", "-showcerts"]
    if sni and not _is_ip(sni):
        args += ["-servername", sni]
    try:
        out = subprocess.run(args, input=b"", capture_output=True, timeout=timeout + 2).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    chain = []
    for m in re.finditer(r"^\s*(\d+) s:(.*)\n\s*i:(.*)$", out, re.M):
        chain.append({"depth": int(m.group(1)), "subject": m.group(2).strip(), "issuer": m.group(3).strip()})
    return chain


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def tls_report(host: str, port: int, *, sni: str | None, ca_file: str | None,
               timeout: float) -> dict[str, Any]:
    name = sni or host
    server_hostname = None if _is_ip(name) else name
    default = handshake(host, port, _client_ctx(), server_hostname, timeout)
    rep: dict[str, Any] = {"port": port, "default": {k: v for k, v in default.items() if k != "der"}}
    if default.get("ok"):
        rep["default"]["forward_secret"] = forward_secret(default["version"], default["cipher"])
        rep["certificate"] = describe_cert(default["der"], name, dt.datetime.now(dt.UTC))
        ver = handshake(host, port, _client_ctx(verify=True, ca_file=ca_file), server_hostname, timeout)
        rep["certificate"]["trusted"] = bool(ver.get("ok"))
        rep["certificate"]["trust_error"] = None if ver.get("ok") else ver.get("error")
        rep["chain"] = chain_via_openssl(host, port, server_hostname, timeout)
    versions = {}
    for label, v in (("TLSv1.3", ssl.TLSVersion.TLSv1_3), ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
                     ("TLSv1.1", ssl.TLSVersion.TLSv1_1), ("TLSv1.0", ssl.TLSVersion.TLSv1)):
        try:
            ctx = _client_ctx(version=v)
        except (ssl.SSLError, ValueError) as exc:
            versions[label] = {"accepted": None, "note": f"not testable here: {exc}"}
            continue
        r = handshake(host, port, ctx, server_hostname, timeout)
        if r.get("local"):
            versions[label] = {"accepted": None, "note": f"not testable here: {r['error']}"}
        else:
            versions[label] = {"accepted": bool(r.get("ok")), "cipher": r.get("cipher"),
                               "error": r.get("error")}
    rep["versions"] = versions
    try:
        ctx = _client_ctx(version=ssl.TLSVersion.TLSv1_2, ciphers=NON_FS_CIPHERS)
        r = handshake(host, port, ctx, server_hostname, timeout)
        rep["non_forward_secret"] = ({"accepted": None, "note": f"not testable here: {r['error']}"} if r.get("local")
                                     else {"accepted": bool(r.get("ok")), "cipher": r.get("cipher"),
                                           "error": r.get("error")})
    except ssl.SSLError as exc:
        rep["non_forward_secret"] = {"accepted": None, "note": f"not testable here: {exc}"}
    return rep


# ---------------------------------------------------------------------------- UDP via reflector


def sample_ports(low: int, high: int, n: int, rng: random.Random) -> list[int]:
    """Both ends of the range plus one random port from each of n-2 equal strata, sorted."""
    n = max(1, min(n, MAX_OPEN_PORTS, high - low + 1))
    if n == 1:
        return [rng.randint(low, high)]
    picks = {low, high}
    inner = n - 2
    width = (high - low - 1) / max(inner, 1)
    for i in range(inner):
        a = low + 1 + int(i * width)
        b = max(a, min(high - 1, low + int((i + 1) * width)))
        picks.add(rng.randint(a, b))
    while len(picks) < n:  # strata narrower than one port collided
        picks.add(rng.randint(low, high))
    return sorted(picks)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.answers: dict[tuple[int, int], ProbeBlock] = {}  # (from port, ssrc) -> block
        self.payloads: dict[tuple[int, int], bytes] = {}
        self.event = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        blk = verify_answer(self.key, data)
        if blk is None:
            return
        ssrc = struct.unpack_from("!I", data, 8)[0]
        self.answers[(addr[1], ssrc)] = blk
        self.payloads[(addr[1], ssrc)] = data
        self.event.set()

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: no answer
        pass


async def udp_ranges(host: str, reflector_port: int, token: str,
                     ranges: tuple[tuple[str, int, int], ...], samples: int, timeout: float,
                     rng: random.Random, progress: Progress | None = None) -> dict[str, Any]:
    key = token.encode()
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, reflector_port, type=socket.SOCK_DGRAM)
    fam, addr = infos[0][0], infos[0][4]
    transport, proto = await loop.create_datagram_endpoint(lambda: _UdpClient(key), family=fam,
                                                           local_addr=("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
    ip = addr[0]
    out: dict[str, Any] = {"reflector_port": reflector_port, "reflector_answered": False, "ranges": []}
    try:
        ssrc0 = struct.unpack("!I", os.urandom(4))[0] & 0xFFFFFF00

        def hdr(ssrc: int, seq: int) -> bytes:
            return struct.pack("!BBHII", 0x80, 0, seq, 0, ssrc)

        async def ask(dst_port: int, ssrc: int, kind: Kind, auth: bytes = b"", arg: int = 0) -> ProbeBlock | None:
            for attempt in range(3):
                proto.event.clear()
                pkt = build_probe(key, rtp_header=hdr(ssrc, attempt), size=HEADER_SIZE + len(auth),
                                  block=ProbeBlock(kind=kind, client_ns=time.time_ns(), arg=arg), auth=auth)
                transport.sendto(pkt, (ip, dst_port, *addr[2:]))
                deadline = time.monotonic() + timeout / 3
                while (dst_port, ssrc) not in proto.answers and time.monotonic() < deadline:
                    proto.event.clear()
                    try:
                        await asyncio.wait_for(proto.event.wait(), max(0.0, deadline - time.monotonic()))
                    except TimeoutError:
                        break
                if (dst_port, ssrc) in proto.answers:
                    return proto.answers[(dst_port, ssrc)]
            return None

        done, total = 0, sum(min(samples, MAX_OPEN_PORTS) for _ in ranges) + 1
        for k, (label, low, high) in enumerate(ranges):
            wanted = sample_ports(low, high, samples, rng)
            auth = struct.pack(f"!{len(wanted)}H", *wanted)
            ssrc = ssrc0 + k
            ans = await ask(reflector_port, ssrc, Kind.OPEN_PORTS, auth, arg=int(max(2.0, 3 * timeout) * 1000))
            rows = []
            if ans is not None:
                out["reflector_answered"] = True
                data = proto.payloads[(reflector_port, ssrc)]
                opened = port_list(data[HEADER_SIZE:HEADER_SIZE + ans.auth_len])
                checks = []
                for p, o in zip(wanted, opened, strict=False):
                    if o == 0:
                        rows.append({"port": p, "state": "not opened (outside the reflector's range or in use)"})
                        continue
                    checks.append(p)
                results = await asyncio.gather(*(ask(p, ssrc0 + 0x80 + i, Kind.ECHO) for i, p in enumerate(checks)))
                for p, r in zip(checks, results, strict=False):
                    rows.append({"port": p, "state": "reachable" if r is not None else "no answer"})
                    done += 1
                    if progress:
                        progress.update(done / total)
                rows.sort(key=lambda r: r["port"])
            out["ranges"].append({"name": label, "low": low, "high": high, "sampled": wanted,
                                  "open_request_answered": ans is not None, "ports": rows})
    finally:
        transport.close()
        if progress:
            progress.close()
    return out


# ---------------------------------------------------------------------------- the probe


async def probe(opts: PortsOptions, progress: Progress | None = None) -> ProbeResult:
    try:
        await asyncio.get_running_loop().getaddrinfo(opts.host, None)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {opts.host}: {exc.strerror}") from None
    if opts.reflector_port is not None and not opts.token:
        raise ProbeError("--reflector-port needs --token (the gateway's reflector_token)")
    res = ProbeResult(probe="ports", target=opts.host)
    tcp_ports = [("sip-tls", opts.sip_tls_port), ("h323", opts.h323_port)]
    if opts.sip_tcp_port:
        tcp_ports.append(("sip-tcp", opts.sip_tcp_port))
    tcp = await asyncio.gather(*(tcp_connect(opts.host, p, opts.timeout_s) for _, p in tcp_ports))
    res.data["tcp"] = [{"name": n, **r} for (n, _), r in zip(tcp_ports, tcp, strict=False)]
    for r in res.data["tcp"]:
        res.checks.append(Check(name=f"tcp {r['name']} {r['port']} open", value=r["state"], limit="open", op=Op.EQ))
    if tcp[0]["state"] == "open":
        tls = await asyncio.to_thread(tls_report, opts.host, opts.sip_tls_port, sni=opts.server_name,
                                      ca_file=opts.ca_file, timeout=opts.timeout_s)
        res.data["tls"] = tls
        res.checks.extend(tls_checks(tls, opts))
    if opts.reflector_port is not None:
        assert opts.token is not None
        rng = random.Random(opts.seed)
        udp = await udp_ranges(opts.host, opts.reflector_port, opts.token, opts.media_ranges, opts.samples,
                               opts.timeout_s, rng, progress)
        res.data["udp"] = udp
        res.checks.append(Check(name="udp reflector answers", value=udp["reflector_answered"], limit=True, op=Op.EQ))
        for rg in udp["ranges"]:
            tested = [p for p in rg["ports"] if p["state"] in ("reachable", "no answer")]
            ok = sum(p["state"] == "reachable" for p in tested)
            res.checks.append(Check(name=f"udp {rg['name']} sampled ports reachable",
                                    value=f"{ok}/{len(tested)}",
                                    limit=f"{len(tested)}/{len(tested)}" if tested else "at least 1 tested",
                                    op=Op.EQ))
    return res


def tls_checks(tls: dict[str, Any], opts: PortsOptions) -> list[Check]:
    out = [Check(name="tls handshake", value=tls["default"].get("ok"), limit=True, op=Op.EQ)]
    if not tls["default"].get("ok"):
        return out
    out.append(Check(name="tls negotiated forward secret", value=tls["default"]["forward_secret"], limit=True, op=Op.EQ))
    v = tls["versions"]
    out.append(Check(name="tls 1.3 preferred (chosen when offered)", value=tls["default"]["version"],
                     limit="TLSv1.3", op=Op.EQ))
    out.append(Check(name="tls 1.2 accepted (required)", value=v["TLSv1.2"]["accepted"], limit=True, op=Op.EQ))
    if v["TLSv1.2"]["accepted"]:
        out.append(Check(name="tls 1.2 suite forward secret",
                         value=forward_secret("TLSv1.2", v["TLSv1.2"]["cipher"]), limit=True, op=Op.EQ))
    for old in ("TLSv1.1", "TLSv1.0"):
        if v[old]["accepted"] is not None:  # untestable from here: reported, not judged
            out.append(Check(name=f"tls {old[4:]} refused", value=not v[old]["accepted"], limit=True, op=Op.EQ))
    nfs = tls["non_forward_secret"]
    if nfs["accepted"] is not None:
        out.append(Check(name="non-forward-secret suite refused", value=not nfs["accepted"], limit=True, op=Op.EQ))
    c = tls["certificate"]
    out.append(Check(name="certificate days left", value=c["days_left"], limit=opts.min_cert_days, op=Op.MIN, unit="days"))
    out.append(Check(name=f"certificate matches {c['name_checked']}", value=c["name_matches"], limit=True, op=Op.EQ))
    return out


def render(res: ProbeResult) -> str:
    d = res.data
    out = [f"Ports probe of {res.target}",
           table(["service", "port", "state", "connect ms"],
                 [[r["name"], r["port"], r["state"], r["connect_ms"]] for r in d["tcp"]])]
    tls = d.get("tls")
    if tls:
        df = tls["default"]
        if df.get("ok"):
            out.append(f"TLS on {tls['port']}: {df['version']} {df['cipher']} ({df['bits']} bit), "
                       f"forward secret: {'yes' if df['forward_secret'] else 'NO'}")
        else:
            out.append(f"TLS on {tls['port']}: handshake failed: {df.get('error')}")
        rows = [[k, "-" if x["accepted"] is None else ("accepted" if x["accepted"] else "refused"),
                 x.get("cipher") or x.get("note") or x.get("error") or ""] for k, x in tls.get("versions", {}).items()]
        if "non_forward_secret" in tls:
            x = tls["non_forward_secret"]
            rows.append(["TLSv1.2 RSA kx (no FS)", "-" if x["accepted"] is None else ("accepted" if x["accepted"] else "refused"),
                         x.get("cipher") or x.get("note") or x.get("error") or ""])
        out.append(table(["offer", "result", "detail"], rows, right=set()))
        c = tls.get("certificate")
        if c:
            out.append(f"certificate: {c['subject']}  issued by {c['issuer']}{' (self-signed)' if c['self_signed'] else ''}\n"
                       f"  {c['key']}, {c['signature']}, valid until {c['not_after']} ({c['days_left']} days)\n"
                       f"  names: {', '.join(c['dns_names'] + c['ip_addresses']) or '-'}; "
                       f"{c['name_checked']} {'matches' if c['name_matches'] else 'does NOT match'}; "
                       f"trusted: {'yes' if c['trusted'] else 'no (' + str(c['trust_error']) + ')'}")
        for link in tls.get("chain") or []:
            out.append(f"  chain {link['depth']}: {link['subject']}  <-  {link['issuer']}")
    udp = d.get("udp")
    if udp:
        for rg in udp["ranges"]:
            out.append(f"UDP {rg['name']} {rg['low']}-{rg['high']} via reflector port {udp['reflector_port']}:")
            out.append(table(["port", "state"], [[p["port"], p["state"]] for p in rg["ports"]] or [["-", "no answer to the open request"]]))
        out.append("(an answer proves this host -> gateway:port and back for these ports only)")
    out.append(checks_table(res.checks))
    out.append(f"verdict: {'PASS' if res.passed else 'FAIL'}")
    return "\n".join(out)
