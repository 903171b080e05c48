"""SIP header grammar (RFC 3261 section 25, RFC 3261 section 7.3).

Header names are case-insensitive and several have compact forms (section 7.3.3);
we store every header under its canonical spelling. Values that are
comma-separated lists (section 7.3.1) are split only outside quotes and angle
brackets. Structured headers the core needs (Via, From/To/Contact name-addr,
CSeq, SIP URIs) have small frozen parsers here; each raises
:class:`SipParseError` naming the defect.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from gateway.sip.errors import SipParseError

# section 7.3.3 compact forms, plus RFC 4028 (x), RFC 3265 (o, u), RFC 3515 (r), RFC 3892 (b)
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
    "y": "Identity", "n": "Identity-Info",
}
_SPECIAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "min-se": "Min-SE", "rseq": "RSeq", "rack": "RAck",
    "session-expires": "Session-Expires", "user-agent": "User-Agent",
}
# Headers that may appear once only (section 20; RFC 4475 3.3.x "multi01", "mcl01").
SINGLE = frozenset({"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length",
                    "Content-Type", "Session-Expires", "Min-SE", "Expires", "RSeq", "RAck"})
# Headers whose values are comma lists (section 7.3.1). Others are kept whole.
LISTS = frozenset({"Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
                   "Proxy-Require", "Unsupported", "Accept", "Allow-Events"})

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_canon_cache: dict[str, str] = {}


def canonical(name: str) -> str:
    """Canonical spelling of a header name (compact forms expanded)."""
    hit = _canon_cache.get(name)
    if hit is not None:
        return hit
    low = name.lower()
    if low in COMPACT:
        out = COMPACT[low]
    elif low in _SPECIAL:
        out = _SPECIAL[low]
    else:
        if not _TOKEN_RE.match(name):
            raise SipParseError(f"Bad header name {name!r}")
        out = "-".join(p.capitalize() for p in low.split("-"))
    if len(_canon_cache) < 4096:
        _canon_cache[name] = out
    return out


def is_token(text: str) -> bool:
    return bool(_TOKEN_RE.match(text))


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quotes and <...> (section 7.3.1)."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError("Unterminated quoted string")
    out.append(value[start:].strip())
    return [p for p in out if p]


def parse_params(text: str) -> dict[str, str]:
    """``;name=value;flag`` -> {name(lower): value or ""} (generic-param, section 25.1)."""
    if not text:
        return {}
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, val = part.partition("=")
        name = name.strip()
        if not name:
            raise SipParseError("Empty parameter name")
        params[name.lower()] = val.strip()
    return params


def format_params(params: dict[str, str]) -> str:
    return "".join(f";{k}={v}" if v != "" else f";{k}" for k, v in params.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """sip:/sips: URI (section 19.1.1); ``tel:`` and others keep ``opaque``."""

    scheme: str
    user: str = ""
    password: str = ""
    host: str = ""
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: str = ""
    opaque: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        if not text or any(c in text for c in " \t\r\n<>"):
            raise SipParseError(f"Bad URI {text[:80]!r}")
        scheme, sep, rest = text.partition(":")
        if not sep or not is_token(scheme):
            raise SipParseError(f"Bad URI scheme in {text[:80]!r}")
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            return cls(scheme=scheme, opaque=rest)
        userinfo, at, hostpart = rest.rpartition("@")  # the user part may hold ? ; : (RFC 4475 3.1.1.2)
        if not at:
            userinfo, hostpart = "", rest
        hostpart, _, hdrs = hostpart.partition("?")
        user, _, password = userinfo.partition(":")
        hostport, _, ptext = hostpart.partition(";")
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise SipParseError(f"Bad IPv6 reference in URI {text[:80]!r}")
            host, portpart = hostport[: end + 1], hostport[end + 1 :]
            if portpart and not portpart.startswith(":"):
                raise SipParseError(f"Bad host in URI {text[:80]!r}")
            portstr = portpart[1:]
        else:
            host, _, portstr = hostport.partition(":")
        if not host or not re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$", host):
            raise SipParseError(f"Bad host in URI {text[:80]!r}")
        port: int | None = None
        if portstr:
            if not portstr.isdigit() or not 0 < int(portstr) < 65536:
                raise SipParseError(f"Bad port in URI {text[:80]!r}")
            port = int(portstr)
        return cls(scheme=scheme, user=unescape(user), password=password, host=host.lower(),
                   port=port, params=parse_params(ptext), headers=hdrs)

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.opaque}"
        user = f"{escape_user(self.user)}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        hdrs = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{self.host}{port}{format_params(self.params)}{hdrs}"


def unescape(text: str) -> str:
    """%HH escapes in a URI user part (section 19.1.2)."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i] == 0x25:
            hexpart = raw[i + 1 : i + 3]
            if len(hexpart) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in hexpart):
                raise SipParseError("Bad %-escape in URI")
            out.append(int(hexpart, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


_USER_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")


def escape_user(user: str) -> str:
    return "".join(c if c in _USER_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
                   for c in user)


# name-addr with an optional token or quoted display name, then <uri> and simple params
_NAMEADDR_FAST = re.compile(
    r'^(?:("(?:[^"\\\r\n]|\\.)*")|([A-Za-z0-9\-.!%*_+`\'~]+(?: [A-Za-z0-9\-.!%*_+`\'~]+)*))? ?'
    r'<([^<>\s"]+:[^<>\s"]+)>((?:;[^;\s<>"]+)*)$')


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """From/To/Contact/Route value: ``"Display" <uri>;params`` or ``uri;params``."""

    display: str
    uri: str  # kept as text: we echo it; parse with SipUri.parse when needed
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        m = _NAMEADDR_FAST.match(text)
        if m is not None:  # the common shapes: ["Display" | Display] <uri>;params
            display = m.group(1) or m.group(2) or ""
            return cls(display=display, uri=m.group(3), params=parse_params(m.group(4)) if m.group(4) else {})
        text = text.strip()
        if "<" in text:
            lt = text.index("<")
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"Unterminated <> in {text[:80]!r}")
            display = text[:lt].strip()
            if display.startswith('"'):
                if len(display) < 2 or not display.endswith('"'):
                    raise SipParseError(f"Bad display name in {text[:80]!r}")
            elif display and not all(is_token(w) for w in display.split()):
                raise SipParseError(f"Bad display name in {text[:80]!r}")
            uri = text[lt + 1 : gt].strip()
            if not uri or " " in uri:
                raise SipParseError(f"Bad URI in {text[:80]!r}")
            return cls(display=display, uri=uri, params=parse_params(text[gt + 1 :]))
        if text == "*":
            return cls(display="", uri="*")
        uri, _, ptext = text.partition(";")  # addr-spec: params belong to the header
        if not uri or " " in uri.strip() or ":" not in uri or "?" in uri:  # 20.10: <> needed for ?
            raise SipParseError(f"Bad address {text[:80]!r}")
        return cls(display="", uri=uri.strip(), params=parse_params(ptext))

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    def __str__(self) -> str:
        disp = f"{self.display} " if self.display else ""
        return f"{disp}<{self.uri}>{format_params(self.params)}"


_VIA_FAST = re.compile(r"^SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9\-.]+)(?::(\d{1,5}))?((?:;[^;\s]+)*)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via hop (section 20.42): ``SIP/2.0/UDP host:port;branch=..;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA_FAST.match(text)
        if m is not None:  # the common shape: SIP/2.0/UDP host:port;params
            port = m.group(3)
            return cls(transport=m.group(1).upper(), host=m.group(2),
                       port=int(port) if port else None, params=parse_params(m.group(4) or ""))
        proto, _, rest = text.strip().partition(" ")
        parts = [p.strip() for p in proto.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP" or parts[1] != "2.0" or not parts[2]:
            # "SIP / 2.0 / UDP" with LWS around slashes is legal (RFC 4475 3.1.1.1)
            m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(.*)$", text, re.S)
            if not m:
                raise SipParseError(f"Bad Via {text[:80]!r}")
            parts = ["SIP", "2.0", m.group(1)]
            rest = m.group(2)
        sentby, _, ptext = rest.strip().partition(";")
        sentby = sentby.strip()
        if sentby.startswith("["):
            end = sentby.find("]")
            host, portstr = sentby[: end + 1], sentby[end + 2 :] if end >= 0 else ""
        else:
            host, _, portstr = sentby.partition(":")
        host, portstr = host.strip(), portstr.strip()
        if not host or not re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$", host):
            raise SipParseError(f"Bad Via sent-by {sentby[:80]!r}")
        if portstr and (not portstr.isdigit() or not 0 < int(portstr) < 65536):
            raise SipParseError(f"Bad Via port {portstr[:20]!r}")
        return cls(transport=parts[2].upper(), host=host, port=int(portstr) if portstr else None,
                   params=parse_params(ptext))

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
            raise SipParseError(f"Bad CSeq {text[:40]!r}")
        num = int(parts[0])
        if num >= 2**31:  # section 8.1.1.5: less than 2**31
            raise SipParseError("CSeq number too large")
        return cls(number=num, method=parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


# Header texts repeat across a call's messages (From, To, Contact, Request-URI and CSeq of the
# INVITE, its ACK, the BYE, every retransmission), and the parsed values are frozen: a text is
# parsed once and the value shared. Callers never mutate a value's ``params`` (copy first).
PARSE_CACHE = 4096
for _cls in (SipUri, NameAddr, Via, CSeq):
    _cls.parse = staticmethod(functools.lru_cache(maxsize=PARSE_CACHE)(_cls.parse))  # type: ignore[method-assign]
