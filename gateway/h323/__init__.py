"""H.323 dial-in: H.225.0 call signalling on TCP 1720, Fast Start, H.245 tunnelled or separate.

Layers (each a sans-I/O core with time passed in, except the last two):

- :mod:`tpkt`       RFC 1006 framing with a length cap.
- :mod:`q931`       Q.931 messages as H.225.0 uses them (IEs typed, causes on errors).
- :mod:`asn1`       the only door to pycrate's H.225.0/H.245 PER; our dataclasses in/out.
- :mod:`messages`   those dataclasses (UUIE, H.245 messages, capabilities).
- :mod:`call`       the H.225.0 callee state machine (Setup .. ReleaseComplete, Status).
- :mod:`h245`       H.245 procedures: TCS, MSD, OLC/CLC, RTD, UII, VFU, flow control, end.
- :mod:`faststart`  choosing among the caller's Fast Start proposals.
- :mod:`connection` asyncio adapter for one call (sockets, legs, application).
- :mod:`service`    :class:`~gateway.h323.service.H323Service`, the listener.
"""
