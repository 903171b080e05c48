"""SIP message parser (RFC 3261 section 7 and 25) and stream framing (section 18.3).

Grammar we hold the peer to (section 25.1):

    Request-Line  = Method SP Request-URI SP SIP-Version CRLF
    Status-Line   = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    message-header = field-name HCOLON field-value CRLF ; HCOLON = *(SP/HTAB) ":" SWS
    LWS folding: a header line starting with SP/HTAB continues the previous one

Limits against floods: 64 KiB per message on streams, one datagram on UDP,
``MAX_HEADERS`` header lines, ``MAX_LINE`` bytes per line. Streams need
Content-Length (section 18.3); a double CRLF keep-alive ping is answered with a
single CRLF (RFC 5626 section 3.5.1). Every defect raises :class:`SipParseError`
with the status to answer and a reason naming it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.sip.errors import SipParseError
from gateway.sip.headers import LISTS, SINGLE, NameAddr, SipUri, Via, canonical, is_token, split_list
from gateway.sip.message import Message, Request, Response

MAX_MESSAGE = 65536
MAX_HEADERS = 128
MAX_LINE = 16384
MAX_BODY = 60000


def parse_message(data: bytes, *, datagram: bool = True) -> Message:
    """Parse one complete message (a datagram, or one framed out of a stream)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("Message too large", status=513)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("Missing empty line after headers")
    head = data[:end].decode("utf-8", "surrogateescape")
    body = data[end + 4 :]
    if "\x00" in head:
        raise SipParseError("NUL byte in message head")
    lines = head.split("\r\n")
    start = lines[0]
    if len(lines) - 1 > MAX_HEADERS:
        raise SipParseError("Too many header lines", status=513)
    headers = _parse_header_lines(lines[1:], folded="\r\n " in head or "\r\n\t" in head)
    length = _content_length(headers, required=not datagram)
    if length is not None:
        if length > len(body):
            raise SipParseError("Content-Length larger than body")
        body = body[:length]  # section 18.3: extra datagram bytes are discarded
    if len(body) > MAX_BODY:
        raise SipParseError("Body too large", status=513)
    if start.startswith("SIP/"):
        return _response(start, headers, body)
    return _request(start, headers, body)


def _parse_header_lines(lines: list[str], *, folded: bool = True) -> tuple[tuple[str, str], ...]:
    if folded:
        merged: list[str] = []
        for line in lines:
            if line[:1] in (" ", "\t"):
                if not merged:
                    raise SipParseError("Continuation line before first header")
                merged[-1] += " " + line.strip()  # LWS folding (section 7.3.1)
            else:
                merged.append(line)
        lines = merged
    out: list[tuple[str, str]] = []
    append = out.append
    seen_single: set[str] = set()
    for line in lines:
        if len(line) > MAX_LINE:
            raise SipParseError("Header line too long", status=513)
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"Header line without colon: {line[:40]!r}")
        cname = _CANON.get(name)
        if cname is None:
            cname = canonical(name.rstrip(" \t"))
            if len(_CANON) < 4096:
                _CANON[name] = cname
        value = value.strip(" \t")
        if cname in SINGLE:
            if cname in seen_single:
                raise SipParseError(f"Multiple {cname} headers")
            seen_single.add(cname)
        if cname in LISTS and "," in value:
            for item in split_list(value):
                append((cname, item))
        else:
            append((cname, value))
    return tuple(out)


_CANON: dict[str, str] = {}


def _content_length(headers: tuple[tuple[str, str], ...], *, required: bool) -> int | None:
    for k, v in headers:
        if k == "Content-Length":
            if not v.isdigit() or len(v) > 9:
                raise SipParseError(f"Bad Content-Length {v[:20]!r}", fatal=required)
            return int(v)
    if required:
        raise SipParseError("Missing Content-Length on stream transport", fatal=True)
    return None


def _check_common(msg: Message) -> None:
    headers = msg.headers
    present = {k for k, _ in headers}
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in present:
            raise SipParseError(f"Missing {name} header")
    _ = (msg.top_via, msg.from_, msg.to, msg.cseq)  # parsed once here, memoized for the core
    first_via = True
    for k, v in headers:
        if k == "Via":
            if not first_via:
                Via.parse(v)
            first_via = False
        elif k == "Call-ID" and (not v or " " in v):
            raise SipParseError("Bad Call-ID")
        elif k == "Max-Forwards" and (not v.isdigit() or int(v) > 255):
            raise SipParseError(f"Bad Max-Forwards {v[:20]!r}")
        elif k == "Expires" and (not v.isdigit() or len(v) > 10):
            raise SipParseError(f"Bad Expires {v[:20]!r}")
        elif k == "Contact" and v != "*":
            NameAddr.parse(v)


def _version(text: str) -> None:
    if text != "SIP/2.0":
        if text.upper().startswith("SIP/") and text[4:].replace(".", "").isdigit():
            raise SipParseError(f"Version {text[:12]} not supported", status=505)
        raise SipParseError(f"Bad SIP version {text[:12]!r}")


def _request(start: str, headers: tuple[tuple[str, str], ...], body: bytes) -> Request:
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Malformed Request-Line")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError(f"Bad method {method[:20]!r}")
    msg = Request(method=method, uri=uri, headers=headers, body=body)
    _check_common(msg)
    _version(version)
    parsed = SipUri.parse(uri)
    if parsed.scheme in ("sip", "sips") and parsed.headers:
        raise SipParseError("Headers not allowed in Request-URI")
    if msg.cseq.method != method:
        raise SipParseError("CSeq method does not match Request-Line")
    return msg


def _response(start: str, headers: tuple[tuple[str, str], ...], body: bytes) -> Response:
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    _version(version)
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise SipParseError(f"Bad status code {code[:10]!r}")
    msg = Response(status=int(code), reason=reason, headers=headers, body=body)
    _check_common(msg)
    return msg


class Keepalive(enum.Enum):
    PING = "ping"  # double CRLF: answer with a single CRLF (RFC 5626 section 3.5.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Framed:
    """One thing framed out of a stream: a message, a parse error for one message, or a ping."""

    message: Message | None = None
    error: SipParseError | None = None
    raw: bytes = b""
    keepalive: Keepalive | None = None


class StreamFramer:
    """Frames SIP messages out of a TCP/TLS byte stream (section 18.3).

    ``feed(data)`` returns what became complete. After a fatal error (the stream
    cannot be framed any more) ``broken`` is True and the connection must close.
    """

    def __init__(self, *, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message
        self.broken = False

    def feed(self, data: bytes) -> list[Framed]:
        if self.broken:
            return []
        self._buf += data
        out: list[Framed] = []
        while self._buf:
            # keep-alives and stray CRLFs between messages (section 7.5)
            if self._buf.startswith(b"\r\n\r\n"):
                del self._buf[:4]
                out.append(Framed(keepalive=Keepalive.PING))
                continue
            if self._buf.startswith(b"\r\n"):
                if len(self._buf) < 4 and b"\r\n\r\n".startswith(bytes(self._buf)):
                    break  # maybe the start of a ping
                del self._buf[:2]
                continue
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self._max:
                    self.broken = True
                    out.append(Framed(error=SipParseError("Message too large", status=513, fatal=True),
                                      raw=bytes(self._buf[:4096])))
                break
            head = bytes(self._buf[:end])
            length = _stream_content_length(head)
            if isinstance(length, SipParseError):
                self.broken = True
                out.append(Framed(error=length, raw=head + b"\r\n\r\n"))
                break
            total = end + 4 + length
            if total > self._max:
                self.broken = True
                out.append(Framed(error=SipParseError("Message too large", status=513, fatal=True),
                                  raw=head + b"\r\n\r\n"))
                break
            if len(self._buf) < total:
                break
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            try:
                out.append(Framed(message=parse_message(raw, datagram=False), raw=raw))
            except SipParseError as exc:
                out.append(Framed(error=exc, raw=raw))
        return out


def _stream_content_length(head: bytes) -> int | SipParseError:
    value: bytes | None = None
    for line in head.split(b"\r\n")[1:]:
        name, colon, rest = line.partition(b":")
        if not colon:
            continue
        n = name.strip().lower()
        if n in (b"content-length", b"l"):
            if value is not None:
                return SipParseError("Multiple Content-Length headers", fatal=True)
            value = rest.strip()
    if value is None:
        return SipParseError("Missing Content-Length on stream transport", fatal=True)
    if not value.isdigit() or len(value) > 9:
        return SipParseError("Bad Content-Length", fatal=True)
    return int(value)
