"""SDP (RFC 4566) as plain values: parse and serialize, nothing negotiated here.

We keep every line we do not interpret (attributes in order, ``b=`` lines) so an
answer can be built from the offer's shape. Malformed SDP raises
:class:`SipParseError` with 400 (the INVITE is refused with a reason naming the
defect); unknown line types are ignored as RFC 4566 section 5 asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sip.errors import SipParseError

_STATIC = {"0": ("PCMU", 8000, 1), "8": ("PCMA", 8000, 1), "9": ("G722", 8000, 1),
           "18": ("G729", 8000, 1), "34": ("H263", 90000, 1), "31": ("H261", 90000, 1)}


@dataclass(slots=True, kw_only=True)
class MediaDesc:
    media: str  # audio, video, application, ...
    port: int
    proto: str  # RTP/AVP, RTP/SAVP, RTP/AVPF, UDP/BFCP, ...
    fmts: list[str]
    port_count: int = 1
    conn: str | None = None  # c= address at media level
    bandwidth: list[str] = field(default_factory=list)
    attrs: list[tuple[str, str | None]] = field(default_factory=list)

    def attr(self, name: str) -> str | None:
        for k, v in self.attrs:
            if k == name:
                return v if v is not None else ""
        return None

    def attr_all(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attrs if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.attrs)

    def rtpmap(self) -> dict[str, tuple[str, int, int]]:
        """payload type -> (upper-cased name, clock rate, channels), static PTs included."""
        out = {k: _STATIC[k] for k in self.fmts if k in _STATIC}
        for value in self.attr_all("rtpmap"):
            pt, _, enc = value.partition(" ")
            parts = enc.strip().split("/")
            try:
                rate = int(parts[1]) if len(parts) > 1 else 0
                chans = int(parts[2]) if len(parts) > 2 else 1
            except ValueError:
                raise SipParseError(f"Bad SDP rtpmap {value[:40]!r}") from None
            out[pt] = (parts[0].upper(), rate, chans)
        return out

    def fmtp(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for value in self.attr_all("fmtp"):
            pt, _, params = value.partition(" ")
            out[pt] = params.strip()
        return out

    def direction(self, session_default: str = "sendrecv") -> str:
        for k, _ in self.attrs:
            if k in ("sendrecv", "sendonly", "recvonly", "inactive"):
                return k
        return session_default


@dataclass(slots=True, kw_only=True)
class Sdp:
    origin_user: str = "-"
    session_id: str = "0"
    version: int = 0
    origin_addr: str = "127.0.0.1"
    session_name: str = "-"
    conn: str | None = None
    bandwidth: list[str] = field(default_factory=list)
    attrs: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDesc] = field(default_factory=list)

    def session_direction(self) -> str:
        for k, _ in self.attrs:
            if k in ("sendrecv", "sendonly", "recvonly", "inactive"):
                return k
        return "sendrecv"

    @classmethod
    def parse(cls, body: bytes | str) -> Sdp:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        sdp = cls()
        seen_v = seen_o = False
        cur: MediaDesc | None = None
        for raw in text.replace("\r\n", "\n").split("\n"):
            line = raw.rstrip("\r")
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise SipParseError(f"Bad SDP line {line[:40]!r}")
            typ, value = line[0], line[2:]
            if typ == "v":
                if value.strip() != "0":
                    raise SipParseError("Bad SDP version")
                seen_v = True
            elif typ == "o":
                parts = value.split()
                if len(parts) != 6 or not parts[2].isdigit():
                    raise SipParseError("Bad SDP origin line")
                sdp.origin_user, sdp.session_id = parts[0], parts[1]
                sdp.version, sdp.origin_addr = int(parts[2]), parts[5]
                seen_o = True
            elif typ == "s":
                sdp.session_name = value
            elif typ == "c":
                parts = value.split()
                if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                    raise SipParseError("Bad SDP connection line")
                addr = parts[2].split("/")[0]
                if cur is None:
                    sdp.conn = addr
                else:
                    cur.conn = addr
            elif typ == "b":
                (sdp.bandwidth if cur is None else cur.bandwidth).append(value)
            elif typ == "a":
                name, colon, val = value.partition(":")
                (sdp.attrs if cur is None else cur.attrs).append((name, val if colon else None))
            elif typ == "m":
                parts = value.split()
                if len(parts) < 3:
                    raise SipParseError("Bad SDP media line")
                portpart, _, count = parts[1].partition("/")
                if not portpart.isdigit() or int(portpart) > 65535 or (count and not count.isdigit()):
                    raise SipParseError("Bad SDP media port")
                cur = MediaDesc(media=parts[0], port=int(portpart), proto=parts[2], fmts=parts[3:],
                                port_count=int(count) if count else 1)
                sdp.media.append(cur)
        if not seen_v or not seen_o:
            raise SipParseError("SDP without v= or o= line")
        return sdp

    def __str__(self) -> str:
        lines = ["v=0", f"o={self.origin_user} {self.session_id} {self.version} IN IP4 {self.origin_addr}",
                 f"s={self.session_name}"]
        if self.conn:
            lines.append(f"c=IN IP4 {self.conn}")
        lines.extend(f"b={b}" for b in self.bandwidth)
        lines.append("t=0 0")
        lines.extend(_attr(k, v) for k, v in self.attrs)
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count > 1 else str(m.port)
            lines.append(f"m={m.media} {port} {m.proto} {' '.join(m.fmts)}".rstrip())
            if m.conn:
                lines.append(f"c=IN IP4 {m.conn}")
            lines.extend(f"b={b}" for b in m.bandwidth)
            lines.extend(_attr(k, v) for k, v in m.attrs)
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode()


def _attr(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"
