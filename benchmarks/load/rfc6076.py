"""SIP end-to-end performance figures of RFC 6076 from the load calls' records.

* SRD, Session Request Delay (section 4.1): from the INVITE to the first response
  that says how the request fares: a provisional other than 100, or the final
  response if none came first. Reported for successful set-ups (2xx) and failed
  ones (4xx-6xx, Timer B) separately.
* SDD, Session Disconnect Delay (section 4.3): from the BYE to its 2xx, or to
  the BYE's timeout (counted with the timeout value).
* SER, Session Establishment Ratio (section 4.6): INVITEs answered 2xx over
  INVITEs not answered 3xx.
* SEER, Session Establishment Effectiveness Ratio (section 4.7): INVITEs answered
  2xx, 480, 486, 600 or 603 over INVITEs not answered 3xx (a busy callee is a
  working network).
* ISA, Ineffective Session Attempts (section 4.8): INVITEs answered 408, 500, 503
  or 504, or with no answer at all, over every INVITE.

Ratios are fractions (0..1), delays milliseconds; pure functions over records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from benchmarks.load.uac import CallRecord

EFFECTIVE = frozenset({480, 486, 600, 603})
INEFFECTIVE = frozenset({408, 500, 503, 504})


def percentiles_ms(values_s: Iterable[float]) -> dict[str, float | int | None]:
    arr = np.fromiter(values_s, float) * 1000.0
    if arr.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"n": int(arr.size), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3), "max": round(float(arr.max()), 3)}


def figures(records: Iterable[CallRecord]) -> dict[str, Any]:
    recs = list(records)
    total = len(recs)
    statuses = [r.final_status for r in recs]
    redirected = sum(1 for s in statuses if s is not None and 300 <= s < 400)
    answered = sum(1 for s in statuses if s is not None and 200 <= s < 300)
    effective = answered + sum(1 for s in statuses if s in EFFECTIVE)
    ineffective = sum(1 for s in statuses if s is None or s in INEFFECTIVE)
    base = total - redirected

    def srd(ok: bool) -> dict[str, float | int | None]:
        return percentiles_ms(
            r.first_response_at - r.invite_at
            for r in recs
            if r.first_response_at is not None and r.final_status is not None
            and (200 <= r.final_status < 300) == ok
        )

    byes = [r for r in recs if r.bye_at is not None]
    sdd = percentiles_ms(r.bye_done_at - r.bye_at for r in byes
                         if r.bye_done_at is not None and r.bye_at is not None)
    by_status: dict[str, int] = {}
    for s in statuses:
        key = "none" if s is None else str(s)
        by_status[key] = by_status.get(key, 0) + 1
    return {
        "attempts": total,
        "answered": answered,
        "final_status": by_status,
        "ser": round(answered / base, 6) if base else None,
        "seer": round(effective / base, 6) if base else None,
        "isa": round(ineffective / total, 6) if total else None,
        "srd_ms": srd(True),
        "srd_failed_ms": srd(False),
        "sdd_ms": sdd,
        "bye_ok": sum(1 for r in byes if r.bye_status is not None and 200 <= r.bye_status < 300),
        "bye_timeouts": sum(1 for r in byes if r.bye_status == 408),
        "remote_byes": sum(1 for r in recs if r.remote_bye_at is not None),
        "invite_retransmissions": sum(r.invite_sends - 1 for r in recs),
    }
