"""The daemon's configuration: one frozen dataclass, built from layers.

Precedence, lowest first: embedded defaults < TOML file (``--config``) <
environment (``VTCGW_<KEY>``) < command-line flags. Every key is a field of
:class:`Config`; each field's metadata says how its text form is parsed, so the
TOML, environment and flag layers share one parser per type.

Paths left unset are derived from ``data_dir`` so that everything the daemon
writes lives under one folder unless configured otherwise.

Invalid values raise :class:`ConfigError` naming the key; the CLI turns it into
one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.rtp.ports import PortRange

ENV_PREFIX = "VTCGW_"


class ConfigError(Exception):
    """A configuration value is wrong; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {key}: {message}")
        self.key = key


# ---- value parsers (text or TOML value -> typed value) -------------------------------


def _port(v: Any) -> int:
    n = _int(v)
    if not 0 <= n <= 65535:
        raise ValueError(f"{n} is not a port (0-65535, 0 = any free port)")
    return n


def _opt_port(v: Any) -> int | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "off", "none")):
        return None
    return _port(v)


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("expected a whole number")
    if isinstance(v, int):
        return v
    text = str(v).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{v!r} is not a number") from None


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{v!r} is not true/false")


def _str(v: Any) -> str:
    return str(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None or str(v) == "" else str(v)


def _opt_path(v: Any) -> Path | None:
    return None if v is None or str(v) == "" else Path(str(v)).expanduser()


def _path(v: Any) -> Path:
    return Path(str(v)).expanduser()


def _range(v: Any) -> PortRange:
    if isinstance(v, PortRange):
        return v
    if isinstance(v, list | tuple) and len(v) == 2:
        return PortRange(low=_int(v[0]), high=_int(v[1]))
    return PortRange.parse(str(v))


def _host(v: Any) -> str:
    text = str(v).strip()
    if not text:
        raise ValueError("empty address")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not all(part and len(part) < 64 for part in text.split(".")):
            raise ValueError(f"{text!r} is not an IP address or host name") from None
    return text


def _opt_host(v: Any) -> str | None:
    return None if v is None or str(v) == "" else _host(v)


def _str_tuple(v: Any) -> tuple[str, ...]:
    if isinstance(v, list | tuple):
        return tuple(str(x).strip() for x in v if str(x).strip())
    return tuple(x.strip() for x in str(v).split(",") if x.strip())


def _log_format(v: Any) -> str:
    text = str(v).strip().lower()
    if text not in ("auto", "json", "console"):
        raise ValueError("must be auto, json or console")
    return text


def _opt(parser: Callable[[Any], Any], doc: str) -> dict[str, Any]:
    return {"parse": parser, "doc": doc}


# ---- the configuration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    data_dir: Path = field(default=Path("var"), metadata=_opt(_path, "folder for everything the daemon writes"))
    node_id: str = field(default_factory=socket.gethostname, metadata=_opt(_str, "this node's name in logs, CDRs and metrics"))
    region: str = field(default="local", metadata=_opt(_str, "site/region tag (aws_region in compatible logs)"))

    bind_host: str = field(default="0.0.0.0", metadata=_opt(_host, "address SIP, H.323 and media listen on"))
    advertise_host: str | None = field(default=None, metadata=_opt(_opt_host, "address put in SDP/H.245 (default: bind host, or 127.0.0.1 if that is 0.0.0.0)"))
    sip_tls_port: int | None = field(default=5061, metadata=_opt(_opt_port, "SIP over TLS (off: 'off')"))
    sip_tcp_port: int | None = field(default=None, metadata=_opt(_opt_port, "SIP over TCP (off unless set)"))
    sip_udp_port: int | None = field(default=None, metadata=_opt(_opt_port, "SIP over UDP (off unless set)"))
    sip_domains: tuple[str, ...] = field(default=(), metadata=_opt(_str_tuple, "accepted Request-URI hosts (empty: any)"))
    tls_cert: Path | None = field(default=None, metadata=_opt(_opt_path, "PEM certificate chain (default: generated under data_dir/tls)"))
    tls_key: Path | None = field(default=None, metadata=_opt(_opt_path, "PEM private key (default: generated under data_dir/tls)"))
    tls_cert2: Path | None = field(default=None, metadata=_opt(_opt_path, "second PEM certificate chain, of another key type than tls_cert (e.g. ECDSA beside RSA); served to clients that can verify it (default: with generated certificates, the ECDSA pair generated beside them)"))
    tls_key2: Path | None = field(default=None, metadata=_opt(_opt_path, "PEM private key of tls_cert2"))
    tls_client_ca: Path | None = field(default=None, metadata=_opt(_opt_path, "CA bundle: if set, SIP TLS clients must present a certificate it signed"))
    require_srtp_on_tls: bool = field(default=False, metadata=_opt(_bool, "refuse plain RTP offers on SIP over TLS"))
    session_expires_s: int = field(default=1800, metadata=_opt(_int, "RFC 4028 Session-Expires we ask for"))
    min_se_s: int = field(default=90, metadata=_opt(_int, "RFC 4028 Min-SE we accept"))
    sip_rate_limit: float = field(default=50.0, metadata=_opt(_float, "new requests per second per source before 503"))
    sip_message_log: Path | None = field(default=None, metadata=_opt(_opt_path, "JSON lines log of every SIP message (off unless set)"))

    h323_port: int | None = field(default=1720, metadata=_opt(_opt_port, "H.323 call signalling (H.225.0 over TCP)"))
    media_range: PortRange = field(default=PortRange(low=10000, high=60000), metadata=_opt(_range, "UDP range for SIP media"))
    h323_media_range: PortRange = field(default=PortRange(low=5100, high=6200), metadata=_opt(_range, "UDP/TCP range for H.323 media and separate H.245"))
    media_quarantine_s: float = field(default=30.0, metadata=_opt(_float, "seconds a released media port waits before reuse"))
    media_timeout_s: float = field(default=30.0, metadata=_opt(_float, "seconds without audio RTP before a call is hung up"))
    reflector_port: int | None = field(default=None, metadata=_opt(_opt_port, "UDP port of the vtcprobe reflector, normally inside media_range (off unless set)"))
    reflector_token: str | None = field(default=None, metadata=_opt(_opt_str, "shared secret vtcprobe signs reflector packets with (HMAC; never sent); required with reflector_port"))
    reflector_rate_pps: float = field(default=1000.0, metadata=_opt(_float, "reflector packets per second per source IP"))
    reflector_total_pps: float = field(default=5000.0, metadata=_opt(_float, "reflector packets per second from all sources"))

    api_host: str = field(default="127.0.0.1", metadata=_opt(_host, "admin API address"))
    api_port: int = field(default=8080, metadata=_opt(_port, "admin API port"))
    api_token: str | None = field(default=None, metadata=_opt(_opt_str, "bearer token for the admin API (default: generated into data_dir/api-token)"))

    database: Path | None = field(default=None, metadata=_opt(_opt_path, "SQLite meeting directory (default: data_dir/vtcgw.sqlite3)"))
    cdr_dir: Path | None = field(default=None, metadata=_opt(_opt_path, "call detail records root (default: data_dir/cdr)"))
    quality_log: Path | None = field(default=None, metadata=_opt(_opt_path, "per-minute media quality JSON lines (default: data_dir/quality.jsonl)"))
    quality_interval_s: float = field(default=60.0, metadata=_opt(_float, "seconds between a call's quality-log records"))
    recordings_dir: Path | None = field(default=None, metadata=_opt(_opt_path, "meeting recordings (default: data_dir/recordings)"))

    webhooks: tuple[str, ...] = field(default=(), metadata=_opt(_str_tuple, "URLs meeting events are POSTed to (comma-separated)"))
    webhook_secret: str | None = field(default=None, metadata=_opt(_opt_str, "HMAC key for X-Vtcgw-Signature (default: generated into data_dir/webhook-secret)"))
    bad_attempts_per_ip_hour: int = field(default=20, metadata=_opt(_int, "wrong meeting IDs/passcodes one source may key per hour"))
    max_talkers: int = field(default=4, metadata=_opt(_int, "loudest talkers summed into a meeting's mix"))

    drain_s: float = field(default=30.0, metadata=_opt(_float, "on SIGTERM, seconds calls may continue before they are hung up"))
    log_format: str = field(default="auto", metadata=_opt(_log_format, "auto (console on a terminal, else JSON), json or console"))
    log_level: str = field(default="info", metadata=_opt(_str, "debug, info, warning or error"))

    # ---- derived paths (never None after resolve()) ----
    def path(self, key: str) -> Path:
        value = getattr(self, key)
        if value is not None:
            return Path(value)
        defaults = {
            "database": "vtcgw.sqlite3",
            "cdr_dir": "cdr",
            "quality_log": "quality.jsonl",
            "recordings_dir": "recordings",
            "tls_cert": "tls/cert.pem",
            "tls_key": "tls/key.pem",
        }
        return self.data_dir / defaults[key]

    @property
    def media_advertise_host(self) -> str:
        if self.advertise_host:
            return self.advertise_host
        return "127.0.0.1" if self.bind_host in ("0.0.0.0", "::") else self.bind_host

    # ---- construction ----
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def doc(cls, key: str) -> str:
        return {f.name: f.metadata["doc"] for f in fields(cls)}[key]

    @classmethod
    def from_layers(
        cls,
        *,
        toml_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        """Defaults < TOML < environment < overrides (CLI flags); then validate."""
        raw: dict[str, Any] = {}
        if toml_path is not None:
            raw.update(_read_toml(toml_path))
        env = os.environ if env is None else env
        for key in cls.keys():
            name = ENV_PREFIX + key.upper()
            if name in env:
                raw[key] = env[name]
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Config:
        by_name = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            f = by_name.get(key)
            if f is None:
                raise ConfigError(key, "unknown key")
            try:
                values[key] = f.metadata["parse"](value)
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None
        config = cls(**values)
        config.validate()
        return config

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.media_range.overlaps(self.h323_media_range):
            raise ConfigError(
                "h323_media_range",
                f"{self.h323_media_range} overlaps media_range {self.media_range}",
            )
        tcp_ports = {
            "sip_tls_port": self.sip_tls_port,
            "sip_tcp_port": self.sip_tcp_port,
            "h323_port": self.h323_port,
        }
        seen: dict[int, str] = {}
        for key, port in tcp_ports.items():
            if port:
                if port in seen:
                    raise ConfigError(key, f"port {port} is also {seen[port]}")
                seen[port] = key
                if self.h323_media_range.low <= port <= self.h323_media_range.high:
                    raise ConfigError(key, f"port {port} is inside h323_media_range")
        for key in ("sip_udp_port",):
            port = getattr(self, key)
            for rkey in ("media_range", "h323_media_range"):
                r: PortRange = getattr(self, rkey)
                if port and r.low <= port <= r.high:
                    raise ConfigError(key, f"port {port} is inside {rkey} {r}")
        if self.min_se_s < 1 or self.session_expires_s < self.min_se_s:
            raise ConfigError("session_expires_s", "must be at least min_se_s (and min_se_s >= 1)")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level", "must be debug, info, warning or error")
        if self.reflector_port is not None:
            if not self.reflector_token or len(self.reflector_token) < 8:
                raise ConfigError("reflector_token", "must be set (at least 8 characters) when reflector_port is")
            if self.reflector_port and self.reflector_port == self.sip_udp_port:
                raise ConfigError("reflector_port", f"port {self.reflector_port} is also sip_udp_port")
        if self.reflector_rate_pps <= 0 or self.reflector_total_pps <= 0:
            raise ConfigError("reflector_rate_pps", "reflector rates must be positive")
        if self.advertise_host is not None:
            try:
                ipaddress.IPv4Address(self.advertise_host)
            except ValueError:
                raise ConfigError("advertise_host", "must be an IPv4 address (it goes into SDP and H.245)") from None
        if self.quality_interval_s < 1:
            raise ConfigError("quality_interval_s", "must be at least 1 second")
        if self.sip_rate_limit <= 0:
            raise ConfigError("sip_rate_limit", "must be positive")
        if self.api_token is not None and len(self.api_token) < 8:
            raise ConfigError("api_token", "must be at least 8 characters")
        for key in ("tls_cert", "tls_key", "tls_cert2", "tls_key2", "tls_client_ca"):
            p = getattr(self, key)
            if p is not None and not os.access(p, os.R_OK):
                raise ConfigError(key, f"{p} is not a readable file")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_key" if self.tls_key is None else "tls_cert", "tls_cert and tls_key go together")
        if (self.tls_cert2 is None) != (self.tls_key2 is None):
            raise ConfigError("tls_key2" if self.tls_key2 is None else "tls_cert2", "tls_cert2 and tls_key2 go together")


def _read_toml(path: Path) -> dict[str, Any]:
    """Flat keys, or keys grouped in tables ([sip], [media], ...) whose names are ignored."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat
