"""SIP settings: one frozen dataclass the lead's config module maps onto."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class SipSettings:
    bind_host: str = "0.0.0.0"
    advertise_host: str = "127.0.0.1"  # in Contact, Via and SDP
    tls_port: int | None = 5061  # None: off; 0: ephemeral (tests)
    tcp_port: int | None = None
    udp_port: int | None = None
    cert_path: str | None = None
    key_path: str | None = None
    # more (certificate, key) pairs of other key types, served beside the first to clients
    # that can use them (an ECDSA pair beside RSA: gateway.tlsconf)
    extra_cert_paths: tuple[tuple[str, str], ...] = ()
    client_ca_path: str | None = None  # set: verify client certificates against it
    require_client_cert: bool = False
    require_srtp_on_tls: bool = False
    session_expires_s: int = 1800  # RFC 4028 default interval when the device asks none
    min_se_s: int = 90  # RFC 4028 Min-SE we enforce (422 below it)
    rate_limit_per_source: float | None = 20.0  # new requests per second per source IP; None: off
    rate_limit_burst: float | None = None
    retry_after_s: int = 30
    domains: frozenset[str] = field(default_factory=frozenset)  # empty: any host accepted
    node_id: str = "gw-1"
    region: str = ""
    answer_delay_s: float = 0.0  # ring (180) this long before answering; 0: answer at once
    tls_handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 900.0  # stream connections with no traffic and no call
    max_connections: int = 10_000
    user_agent: str = "vtcgw"
