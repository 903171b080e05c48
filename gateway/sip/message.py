"""SIP messages as frozen values (RFC 3261 section 7) and their serializer.

Headers keep wire order as ``(canonical name, value)`` pairs; list headers
(section 7.3.1) hold one pair per element, so ``Via`` hops are separate
entries. ``bytes(msg)`` serializes with a Content-Length computed from the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq, NameAddr, SipUri, Via

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 183: "Session Progress",
    200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    513: "Message Too Large", 603: "Decline",
}

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    headers: Headers = ()
    body: bytes = b""
    # parsed views of headers, filled on first use (the message itself never changes)
    _memo: dict[str, object] = field(default_factory=dict, init=False, compare=False, repr=False)

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.headers)

    def tokens(self, name: str) -> frozenset[str]:
        """Lower-cased option tags of Supported/Require/Allow and the like."""
        key = "tokens:" + name
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = frozenset(
                t.strip().lower() for k, v in self.headers if k == name for t in v.split(",") if t.strip()
            )
        return hit  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        return self.header("Call-ID")

    @property
    def cseq(self) -> CSeq:
        hit = self._memo.get("cseq")
        if hit is None:
            hit = self._memo["cseq"] = CSeq.parse(self.header("CSeq"))
        return hit  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.header_all("Via")]

    @property
    def top_via(self) -> Via:
        hit = self._memo.get("via")
        if hit is None:
            for k, v in self.headers:
                if k == "Via":
                    hit = self._memo["via"] = Via.parse(v)
                    break
            else:
                raise SipParseError("Missing Via")
        return hit  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        hit = self._memo.get("from")
        if hit is None:
            hit = self._memo["from"] = NameAddr.parse(self.header("From"))
        return hit  # type: ignore[return-value]

    @property
    def to(self) -> NameAddr:
        hit = self._memo.get("to")
        if hit is None:
            hit = self._memo["to"] = NameAddr.parse(self.header("To"))
        return hit  # type: ignore[return-value]

    def _head_bytes(self, start: str) -> bytes:
        lines = [start]
        lines.extend(f"{k}: {v}" for k, v in self.headers if k != "Content-Length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(_Base):
    method: str
    uri: str

    @property
    def ruri(self) -> SipUri:
        return SipUri.parse(self.uri)  # memoized by text in gateway.sip.headers

    def __bytes__(self) -> bytes:
        return self._head_bytes(f"{self.method} {self.uri} SIP/2.0")

    def with_headers(self, headers: Headers) -> Request:
        return replace(self, headers=headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(_Base):
    status: int
    reason: str = ""

    def __bytes__(self) -> bytes:
        reason = self.reason or REASONS.get(self.status, "Unknown")
        return self._head_bytes(f"SIP/2.0 {self.status} {reason}")

    def with_headers(self, headers: Headers) -> Response:
        return replace(self, headers=headers)


Message = Request | Response


def response_to(request: Request, status: int, reason: str = "", *, to_tag: str = "",
                extra: Headers = (), body: bytes = b"", content_type: str = "") -> Response:
    """A response copying Via, From, To, Call-ID and CSeq from the request (section 8.2.6.2)."""
    hdrs: list[tuple[str, str]] = []
    for k, v in request.headers:
        if k in ("Via", "From", "Call-ID", "CSeq"):
            hdrs.append((k, v))
        elif k == "To":
            if to_tag and ";tag=" not in v.replace(" ", "").lower() and status != 100:
                v = f"{v};tag={to_tag}"
            hdrs.append((k, v))
        elif k == "Record-Route" and 100 < status < 300:
            hdrs.append((k, v))  # section 12.1.1: copied into dialog-creating responses
        elif k == "Timestamp" and status == 100:
            hdrs.append((k, v))  # section 8.2.6.1
    hdrs.extend(extra)
    if body and content_type:
        hdrs.append(("Content-Type", content_type))
    return Response(status=status, reason=reason or REASONS.get(status, ""), headers=tuple(hdrs),
                    body=body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where a message came from and how to answer: the transport and connection."""

    transport: str  # "udp", "tcp", "tls"
    addr: tuple[str, int]
    conn_id: int = 0  # stream connection id (0 for UDP)
    local: tuple[str, int] = ("", 0)

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"
