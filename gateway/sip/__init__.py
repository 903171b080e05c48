"""SIP signalling for the gateway: a sans-I/O core and thin asyncio transports.

Public API (import from the modules; this package imports nothing, so the pure core
stays free of asyncio):

- ``gateway.sip.service.SipService(settings, app, media, metrics=None, message_log=None)``
  with ``await start() -> {"sip_tls": port, "sip_tcp": port, "sip_udp": port}``,
  ``stop_accepting()``, ``reload_tls(cert_path, key_path)``, ``await close()``.
- ``gateway.sip.settings.SipSettings``: the frozen settings dataclass.
- ``gateway.sip.metrics``: the metrics hook (``inc``/``gauge`` or a callable).

Layers, bottom up: ``parser``/``message``/``headers`` (wire), ``transaction`` (RFC 3261
section 17), ``dialog`` + ``session_timer`` + ``sdp``/``offer_answer``, ``call`` (the call
state table), ``uas`` (calls on top of transactions), ``core`` (routing and timers),
``transport`` and ``service`` (asyncio).
"""
