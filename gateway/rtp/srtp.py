"""SDES-keyed SRTP/SRTCP for one leg (RFC 3711, keys from RFC 4568) via pylibsrtp.

Failures to authenticate or decrypt raise :class:`SrtpError`; the leg drops and counts them.
"""

from __future__ import annotations

import base64

from pylibsrtp import Error as _LibError
from pylibsrtp import Policy, Session

from gateway.rtp.types import SrtpParams

_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


class SrtpError(Exception):
    """A protected packet failed authentication/replay checks, or keys are unusable."""


def _policy(params: SrtpParams, ssrc_type: int) -> Policy:
    profile = _PROFILES.get(params.suite.upper())
    if profile is None:
        raise SrtpError(f"unsupported SRTP suite {params.suite!r}")
    try:
        key = base64.b64decode(params.key_b64.split("|", 1)[0], validate=True)
    except ValueError:
        raise SrtpError("SRTP key is not base64") from None
    if len(key) != 30:
        raise SrtpError(f"SRTP master key||salt must be 30 bytes, got {len(key)}")
    return Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)


class SrtpContext:
    """Outbound protection with our key, inbound with the device's (one per leg)."""

    def __init__(self, tx: SrtpParams, rx: SrtpParams) -> None:
        self.tx_params, self.rx_params = tx, rx
        self._tx = Session(policy=_policy(tx, Policy.SSRC_ANY_OUTBOUND))
        self._rx = Session(policy=_policy(rx, Policy.SSRC_ANY_INBOUND))

    def protect(self, data: bytes) -> bytes:
        return self._tx.protect(data)

    def protect_rtcp(self, data: bytes) -> bytes:
        return self._tx.protect_rtcp(data)

    def unprotect(self, data: bytes) -> bytes:
        try:
            return self._rx.unprotect(data)
        except _LibError as exc:
            raise SrtpError(str(exc)) from None

    def unprotect_rtcp(self, data: bytes) -> bytes:
        try:
            return self._rx.unprotect_rtcp(data)
        except _LibError as exc:
            raise SrtpError(str(exc)) from None
