"""RFC 4028 session timers, as the UAS of the initial INVITE (sans-I/O).

- Section 8.1 / 5: a Session-Expires below our Min-SE is refused with 422 and our Min-SE.
- Section 9: the UAS picks the refresher when the UAC left it open: the UAC if it supports
  ``timer`` (then ``Require: timer`` in the 2xx), us otherwise. With no Session-Expires in
  the request we still run a timer at our default interval: the UAC refreshes if it said
  ``Supported: timer``, else we do.
- Section 10: the refresher refreshes at half the interval; the other side sends BYE at
  ``interval - min(32, interval / 3)`` if no refresh arrived.
- Section 7.2/7.4: in our own refresh (UPDATE or re-INVITE) we are the UAC, so we ask
  ``refresher=uac``; a 422 to it raises the interval to the peer's Min-SE and retries.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.sip.errors import SipRequestError
from gateway.sip.headers import parse_params
from gateway.sip.message import Request, Response


class Refresher(enum.Enum):
    US = "us"
    PEER = "peer"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTimer:
    interval_s: int
    refresher: Refresher
    peer_supports_timer: bool

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """Headers for our 2xx to the request that negotiated this timer (we are its UAS)."""
        role = "uas" if self.refresher is Refresher.US else "uac"
        hdrs: tuple[tuple[str, str], ...] = (("Session-Expires", f"{self.interval_s};refresher={role}"),)
        if self.refresher is Refresher.PEER:
            hdrs += (("Require", "timer"),)
        return hdrs

    def deadline(self, now: float) -> tuple[float, bool]:
        """(when, refresh): when to refresh (True) or, if the peer refreshes, when to BYE."""
        if self.refresher is Refresher.US:
            return now + self.interval_s / 2, True
        return now + self.interval_s - min(32.0, self.interval_s / 3), False


def parse_session_expires(value: str) -> tuple[int, str]:
    delta, _, params = value.partition(";")
    delta = delta.strip()
    if not delta.isdigit() or len(delta) > 9:
        raise SipRequestError(400, "Bad Session-Expires")
    return int(delta), parse_params(params).get("refresher", "").lower()


def negotiate_as_uas(request: Request, *, min_se: int, default_se: int) -> SessionTimer:
    """Session timer for a request we answer 2xx; raises 422 when the interval is too small."""
    supports = "timer" in request.tokens("Supported") or "timer" in request.tokens("Require")
    value = request.header("Session-Expires")
    if not value:
        return SessionTimer(interval_s=max(default_se, min_se, _peer_min_se(request)),
                            refresher=Refresher.PEER if supports else Refresher.US,
                            peer_supports_timer=supports)
    interval, role = parse_session_expires(value)
    if interval < min_se:
        raise SipRequestError(422, "Session Interval Too Small", headers=(("Min-SE", str(min_se)),))
    if role == "uas":
        refresher = Refresher.US
    elif role == "uac":
        refresher = Refresher.PEER
    else:
        refresher = Refresher.PEER if supports else Refresher.US
    return SessionTimer(interval_s=interval, refresher=refresher, peer_supports_timer=supports)


def _peer_min_se(request: Request) -> int:
    value = request.header("Min-SE").partition(";")[0].strip()
    return int(value) if value.isdigit() and len(value) < 10 else 0


def refresh_headers(timer: SessionTimer, min_se: int) -> tuple[tuple[str, str], ...]:
    """Headers of our refresh request (we are its UAC and stay the refresher)."""
    return (("Session-Expires", f"{timer.interval_s};refresher=uac"), ("Min-SE", str(min_se)),
            ("Supported", "timer"))


def after_refresh_response(timer: SessionTimer, response: Response) -> SessionTimer:
    """Settle the timer from the 2xx to our refresh (section 7.4)."""
    value = response.header("Session-Expires")
    if not value:
        return timer
    try:
        interval, role = parse_session_expires(value)
    except SipRequestError:
        return timer
    return SessionTimer(interval_s=interval, refresher=Refresher.PEER if role == "uas" else Refresher.US,
                        peer_supports_timer=timer.peer_supports_timer)


def after_422(timer: SessionTimer, response: Response) -> SessionTimer:
    """Raise the interval to the peer's Min-SE (section 7.2, 8.1)."""
    value = response.header("Min-SE").partition(";")[0].strip()
    floor = int(value) if value.isdigit() and len(value) < 10 else timer.interval_s * 2
    return SessionTimer(interval_s=max(timer.interval_s, floor), refresher=timer.refresher,
                        peer_supports_timer=timer.peer_supports_timer)
