"""A small CallApplication for the H.323 tests: records everything, may join a conference."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.calls import Admission, CallControl, DigitSource, IncomingCall
from gateway.rtp.ports import PortRange
from gateway.rtp.types import MediaKind


@dataclass
class RecordingApp:
    plane: object | None = None
    admission: Admission = Admission.ACCEPT
    join: bool = False
    admitted: list[IncomingCall] = field(default_factory=list)
    connected: dict[str, CallControl] = field(default_factory=dict)
    digits: list[tuple[str, str, DigitSource]] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)

    def admit(self, call: IncomingCall) -> Admission:
        self.admitted.append(call)
        return self.admission

    def call_connected(self, call: IncomingCall, control: CallControl) -> None:
        self.connected[call.call_id] = control
        if self.join and self.plane is not None:
            legs = {leg.kind: leg for leg in control.legs}
            conf = self.plane.conference(call.target.meeting_id or "menu")  # type: ignore[attr-defined]
            conf.join(
                call.call_id, audio=legs.get(MediaKind.AUDIO), video=legs.get(MediaKind.VIDEO)
            )

    def digit(self, call_id: str, digit: str, source: DigitSource, *, suspect: bool = False) -> None:
        self.digits.append((call_id, digit, source))

    def call_ended(self, call_id: str, reason: str) -> None:
        self.ended[call_id] = reason
        if self.join and self.plane is not None:
            for conf in list(self.plane.conferences.values()):  # type: ignore[attr-defined]
                if call_id in conf.participants:
                    conf.leave(call_id)


def port_ranges() -> tuple[PortRange, PortRange]:
    # above the kernel ephemeral range (32768-60999) and the SIP media default (10000-60000)
    base = random.randrange(61000, 64800, 400)
    return PortRange(low=base, high=base + 199), PortRange(low=base + 200, high=base + 399)
