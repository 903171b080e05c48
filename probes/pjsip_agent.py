"""A reusable pjsua2 SIP agent, run as a subprocess: one process, one call.

Why a subprocess: the pjsua2 wheel allows at most 4 calls per process and insists on
its own threading rules (INTEROP.md gotchas 1-3); a crash there must not take a test
or probe down with it.

CLI::

    python -m probes.pjsip_agent --spec '{"role": "call", "uri": "sip:1234567890@127.0.0.1:5061;transport=tls",
                                          "transport": "tls", "hangup_after": 5}'
    python -m probes.pjsip_agent --spec-file spec.json

Spec keys (all optional except ``uri`` for role "call"):

    role            "call" (default) or "answer" (wait for one incoming call, answer 200)
    uri             Request-URI to call, e.g. "sip:1234567890@127.0.0.1:5090;transport=tcp"
    transport       "udp" (default) | "tcp" | "tls"   (TLS is 1.2: the wheel's OpenSSL 1.0.2)
    local_port      SIP port to bind (0 = ephemeral, the default)
    tls_cert, tls_key   certificate/key files (role "answer" over TLS)
    from_user       user part of our identity (default "probe")
    play_wav        WAV file played into the call (looped)
    record_wav      WAV file written with what we hear
    codecs          priority list, default ["PCMU/8000", "PCMA/8000", "G722/16000"]
    srtp            "disabled" (default) | "optional" | "mandatory"  (SDES)
    dtmf            [{"at": 2.0, "digits": "12#", "method": "rfc4733" | "info"}]   (s after CONFIRMED)
    hold            [{"at": 3.0, "action": "hold" | "unhold"}]                       (re-INVITEs)
    timer           "inactive" | "optional" (default) | "required" | "always"   (RFC 4028)
    session_expires, min_se   seconds (pjsip refuses values below 90)
    hangup_after    seconds after CONFIRMED, then BYE; null/absent: wait for the remote BYE
    max_duration    hard stop in seconds (default 60): hang up and exit
    log_level       pjsip log level on stderr (default 0)

Output: one JSON object per line on stdout, each with "event" and "t" (s since start):

    {"event": "ready", "local_port": 5072}
    {"event": "state", "state": "CALLING"|"EARLY"|"CONNECTING"|"CONFIRMED"|"DISCONNECTED", "code": 200}
    {"event": "media", "index": 0, "type": "audio", "status": "active"|"hold"|..., "codec": "PCMU"}
    {"event": "dtmf_sent", "digits": "12#", "method": "info"}
    {"event": "dtmf_received", "digit": "5"}
    {"event": "hold" | "unhold"}
    {"event": "stats", "index": 0, "rx_packets": .., "tx_packets": .., "rx_loss": .., "tx_loss": ..,
     "rx_jitter_us": .., "tx_jitter_us": .., "rtt_us": ..}      (final RTCP figures, per audio stream)
    {"event": "ended", "code": 200, "reason": "Normal call clearing", "by": "local"|"remote"}
    {"event": "error", "message": ...}
    {"event": "done", "ok": true}

Exit status 0 when the call reached CONFIRMED and ended, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

T0 = time.monotonic()
_OUT: Any = sys.stdout


def _claim_stdout() -> None:
    """pjlib logs to fd 1 before any config applies: keep fd 1 for our JSON, send pjlib to stderr."""
    global _OUT
    sys.stdout.flush()
    _OUT = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(time.monotonic() - T0, 3), **fields}), file=_OUT, flush=True)


def run(spec: dict[str, Any]) -> int:
    import pjsua2 as pj

    role = spec.get("role", "call")
    transport = spec.get("transport", "udp").lower()
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0  # INTEROP.md gotcha 3
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.level = int(spec.get("log_level", 0))
    cfg.logConfig.consoleLevel = int(spec.get("log_level", 0))
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = int(spec.get("local_port", 0))
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ttype = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}[transport]
    if transport == "tls":
        tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        tcfg.tlsConfig.verifyServer = False
        if spec.get("tls_cert"):
            tcfg.tlsConfig.certFile = spec["tls_cert"]
            tcfg.tlsConfig.privKeyFile = spec["tls_key"]
    tid = ep.transportCreate(ttype, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    local_port = ep.transportGetInfo(tid).localName.split(":")[-1]
    codecs = spec.get("codecs") or ["PCMU/8000", "PCMA/8000", "G722/16000"]
    for ci in ep.codecEnum2():
        ep.codecSetPriority(ci.codecId, 0 if not any(ci.codecId.startswith(c) for c in codecs) else 1)
    for i, name in enumerate(codecs):
        for ci in ep.codecEnum2():
            if ci.codecId.startswith(name):
                ep.codecSetPriority(ci.codecId, 255 - i)

    acfg = pj.AccountConfig()
    user = spec.get("from_user", "probe")
    acfg.idUri = f"sip:{user}@127.0.0.1:{local_port}"
    acfg.sipConfig.transportId = tid
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"  # INTEROP.md gotcha 2
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acfg.mediaConfig.srtpUse = {"disabled": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                                "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[spec.get("srtp", "disabled")]
    acfg.mediaConfig.srtpSecureSignaling = 0
    acfg.callConfig.timerUse = {"inactive": pj.PJSUA_SIP_TIMER_INACTIVE, "optional": pj.PJSUA_SIP_TIMER_OPTIONAL,
                                "required": pj.PJSUA_SIP_TIMER_REQUIRED,
                                "always": pj.PJSUA_SIP_TIMER_ALWAYS}[spec.get("timer", "optional")]
    if spec.get("session_expires"):
        acfg.callConfig.timerSessExpiresSec = int(spec["session_expires"])
    if spec.get("min_se"):
        acfg.callConfig.timerMinSESec = int(spec["min_se"])
    acfg.videoConfig.autoTransmitOutgoing = False
    acfg.videoConfig.autoShowIncoming = False

    st: dict[str, Any] = {"confirmed_at": None, "disconnected": False, "ended_by": "remote", "calls": [],
                          "stats": {}, "incoming": None, "players": [], "recorder": None}

    class Call(pj.Call):  # type: ignore[misc]
        def onCallState(self, prm: Any) -> None:
            ci = self.getInfo()
            name = ci.stateText.upper() if ci.stateText else str(ci.state)
            emit("state", state=name, code=int(ci.lastStatusCode))
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and st["confirmed_at"] is None:
                st["confirmed_at"] = time.monotonic()
            if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                emit("ended", code=int(ci.lastStatusCode), reason=ci.lastReason, by=st["ended_by"])
                st["disconnected"] = True

        def onCallMediaState(self, prm: Any) -> None:
            ci = self.getInfo()
            for i, mi in enumerate(ci.media):
                if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                    continue
                status = {pj.PJSUA_CALL_MEDIA_ACTIVE: "active", pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local-hold",
                          pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote-hold",
                          pj.PJSUA_CALL_MEDIA_NONE: "none"}.get(mi.status, str(mi.status))
                codec = ""
                try:
                    codec = self.getStreamInfo(i).codecName
                except Exception:  # noqa: BLE001 - no stream while held
                    pass
                emit("media", index=i, type="audio", status=status, codec=codec)
                if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    am = self.getAudioMedia(i)
                    if spec.get("play_wav") and not st["players"]:
                        player = pj.AudioMediaPlayer()
                        try:
                            player.createPlayer(spec["play_wav"], 0)
                            st["players"].append(player)
                        except pj.Error as exc:
                            emit("error", message=f"play_wav: {exc.info()}")
                            spec["play_wav"] = None
                    for player in st["players"]:
                        player.startTransmit(am)
                    if spec.get("record_wav"):
                        if st["recorder"] is None:
                            rec = pj.AudioMediaRecorder()
                            try:
                                rec.createRecorder(spec["record_wav"])
                                st["recorder"] = rec
                            except pj.Error as exc:
                                emit("error", message=f"record_wav: {exc.info()}")
                                spec["record_wav"] = None
                        if st["recorder"] is not None:
                            am.startTransmit(st["recorder"])

        def onDtmfDigit(self, prm: Any) -> None:
            emit("dtmf_received", digit=prm.digit)

    class Account(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            call = Call(self, prm.callId)
            st["calls"].append(call)
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)

    acc = Account()
    acc.create(acfg)
    emit("ready", local_port=int(local_port))

    if role == "call":
        call = Call(acc)
        st["calls"].append(call)
        op = pj.CallOpParam(True)
        op.opt.audioCount = 1
        op.opt.videoCount = 0
        try:
            call.makeCall(spec["uri"], op)
        except pj.Error as exc:
            emit("error", message=exc.info())
    actions = sorted(
        [(float(d["at"]), "dtmf", d) for d in spec.get("dtmf", [])]
        + [(float(h["at"]), "hold", h) for h in spec.get("hold", [])]
        + ([(float(spec["hangup_after"]), "hangup", {})] if spec.get("hangup_after") is not None else []),
        key=lambda a: a[0])
    max_duration = float(spec.get("max_duration", 60))
    deadline = T0 + max_duration
    last_stats = 0.0
    ok = False
    while not st["disconnected"] and time.monotonic() < deadline:
        ep.libHandleEvents(20)
        now = time.monotonic()
        calls = st["calls"]
        if not calls or st["confirmed_at"] is None:
            continue
        ok = True
        call = calls[0]
        if now - last_stats > 1.0:
            last_stats = now
            _snapshot(pj, call, st)
        while actions and now - st["confirmed_at"] >= actions[0][0]:
            _, kind, a = actions.pop(0)
            try:
                if kind == "dtmf":
                    p = pj.CallSendDtmfParam()
                    p.digits = a["digits"]
                    p.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if a.get("method") == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
                    p.duration = int(a.get("duration_ms", 160))
                    call.sendDtmf(p)
                    emit("dtmf_sent", digits=a["digits"], method=a.get("method", "rfc4733"))
                elif kind == "hold":
                    op = pj.CallOpParam(True)
                    if a["action"] == "hold":
                        call.setHold(op)
                    else:
                        op.opt.flag = pj.PJSUA_CALL_UNHOLD
                        call.reinvite(op)
                    emit(a["action"])
                else:
                    _snapshot(pj, call, st)
                    st["ended_by"] = "local"
                    call.hangup(pj.CallOpParam(True))
            except pj.Error as exc:
                emit("error", message=exc.info())
    if not st["disconnected"] and st["calls"]:
        _snapshot(pj, st["calls"][0], st)
        st["ended_by"] = "local"
        try:
            st["calls"][0].hangup(pj.CallOpParam(True))
        except pj.Error:
            pass
        end = time.monotonic() + 3
        while not st["disconnected"] and time.monotonic() < end:
            ep.libHandleEvents(20)
    for idx, s in sorted(st["stats"].items()):
        emit("stats", index=idx, **s)
    call = None  # drop every Call reference before libDestroy (gotcha 3)
    st["calls"].clear()
    st["players"].clear()
    st["recorder"] = None
    del acc
    ep.libDestroy()
    emit("done", ok=ok and st["disconnected"])
    return 0 if ok and st["disconnected"] else 1


def _snapshot(pj: Any, call: Any, st: dict[str, Any]) -> None:
    try:
        ci = call.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            ss = call.getStreamStat(i)
            r = ss.rtcp
            st["stats"][i] = {"rx_packets": int(r.rxStat.pkt), "tx_packets": int(r.txStat.pkt),
                              "rx_loss": int(r.rxStat.loss), "tx_loss": int(r.txStat.loss),
                              "rx_jitter_us": float(r.rxStat.jitterUsec.mean),
                              "tx_jitter_us": float(r.txStat.jitterUsec.mean),
                              "rtt_us": float(r.rttUsec.mean)}
    except Exception:  # noqa: BLE001 - no stream (held, ended): keep the last snapshot
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pjsua2 agent: one SIP call, JSON events on stdout")
    ap.add_argument("--spec", help="JSON spec")
    ap.add_argument("--spec-file", help="file holding the JSON spec")
    args = ap.parse_args(argv)
    _claim_stdout()
    if args.spec_file:
        with open(args.spec_file, encoding="utf-8") as f:
            spec = json.load(f)
    elif args.spec:
        spec = json.loads(args.spec)
    else:
        ap.error("--spec or --spec-file is required")
    try:
        return run(spec)
    except Exception as exc:  # noqa: BLE001 - report, never hang the caller
        emit("error", message=f"{type(exc).__name__}: {exc}")
        emit("done", ok=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
