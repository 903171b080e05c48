"""A SIP dialog as the UAS of the initial INVITE (RFC 3261 section 12), sans-I/O.

The dialog knows both tags, the route set and the remote target, and builds our
in-dialog requests (section 12.2.1.1): Request-URI = remote target, Route = the
route set, CSeq one above the last we sent. It also checks the remote CSeq of
incoming requests (section 12.2.2: lower than the last one -> 500).
"""

from __future__ import annotations

import functools
import random
import secrets
from dataclasses import dataclass, field

from gateway.sip.headers import NameAddr
from gateway.sip.message import Origin, Request

# tags and branches must be unguessable (section 19.3: cryptographically random); numbers that
# only have to differ (first CSeq, SDP o= session id and version) come from a seeded PRNG
NUMBERS = random.Random()


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass(slots=True, kw_only=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To header of the INVITE, without tag (our identity in the dialog)
    remote_uri: str  # the From header of the INVITE, without tag
    remote_target: str  # Contact URI of the peer
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int = 0
    origin: Origin
    contact: str = ""  # our Contact header value
    via_host: str = ""
    secure: bool = False

    @classmethod
    def from_invite(cls, invite: Request, origin: Origin, *, local_tag: str, contact: str,
                    via_host: str) -> Dialog:
        frm = invite.from_
        to = invite.to
        target = invite.header("Contact")
        remote_target = NameAddr.parse(target).uri if target else frm.uri
        return cls(call_id=invite.call_id, local_tag=local_tag, remote_tag=frm.tag,
                   local_uri=_strip_tag(invite.header("To")), remote_uri=_strip_tag(invite.header("From")),
                   remote_target=remote_target, route_set=invite.header_all("Record-Route"),
                   remote_cseq=invite.cseq.number, origin=origin, contact=contact, via_host=via_host,
                   local_cseq=NUMBERS.randrange(1, 2**16 + 1) if to.tag == "" else 1,
                   secure=invite.uri.lower().startswith("sips:"))

    def request(self, method: str, *, extra: tuple[tuple[str, str], ...] = (), body: bytes = b"",
                content_type: str = "", cseq: int | None = None, branch: str | None = None) -> Request:
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        via = f"SIP/2.0/{self.origin.transport.upper()} {self.via_host};branch={branch or new_branch()};rport"
        hdrs: list[tuple[str, str]] = [("Via", via), ("Max-Forwards", "70")]
        hdrs.extend(("Route", r) for r in self.route_set)
        hdrs += [("From", f"{self.local_uri};tag={self.local_tag}"),
                 ("To", f"{self.remote_uri};tag={self.remote_tag}"),
                 ("Call-ID", self.call_id), ("CSeq", f"{cseq} {method}")]
        if method in ("INVITE", "UPDATE"):
            hdrs.append(("Contact", self.contact))
        hdrs.extend(extra)
        if body and content_type:
            hdrs.append(("Content-Type", content_type))
        return Request(method=method, uri=self.remote_target, headers=tuple(hdrs), body=body)

    def matches(self, message: Request) -> bool:
        return message.to.tag == self.local_tag and message.from_.tag == self.remote_tag


@functools.lru_cache(maxsize=4096)
def _strip_tag(value: str) -> str:
    na = NameAddr.parse(value)
    params = {k: v for k, v in na.params.items() if k != "tag"}
    return str(NameAddr(display=na.display, uri=na.uri, params=params))
