"""MOS estimation with the ITU-T G.107 E-model (narrowband), pure functions.

R = Ro - Is - Id - Ie,eff + A (G.107 section 3), with
  Ro = 15 - 1.5 (SLR + No)                     basic signal-to-noise ratio
  Is = Iolr + Ist + Iq                          simultaneous impairments
  Id = Idte + Idle + Idd                        delay impairments
  Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)
and the R -> MOS mapping of G.107 Annex B. All G.107 defaults (SLR 8, RLR 2,
STMR 15, LSTR 18, Ds 3, TELR 65, WEPL 110, T = Tr = Ta = 0, qdu 1, Nc -70,
Nfor -64, Ps = Pr = 35, A 0) give R = 93.2 (93.206...), MOS 4.41.

From network figures we set Ta = T = one-way mouth-to-ear delay and Tr = 2 T.
The old service reported MOS clamped to 1.0-4.4; `Mos.value` is that figure and
`Mos.unclamped` the Annex B value.

Codec table (`CODECS`), Ie and Bpl values and their sources:
  * G.711 without PLC: Ie 0, Bpl 4.3 -- ITU-T G.113 Appendix I (also the G.107
    default Bpl).
  * G.711 with PLC (G.711 Appendix I): Ie 0, Bpl 25.1 -- G.113 Appendix I.
  * G.729A + VAD: Ie 11, Bpl 19.0 -- G.113 Appendix I.
  * G.722 (64 kbit/s): G.113 rates G.722 on the wideband scale only (G.107.1);
    on this narrowband scale we ASSUME it is transparent like G.711 with PLC:
    Ie 0, Bpl 25.1.
  * Opus: no G.113 entry. ASSUMPTION: Ie 0 (transparent at VoIP bit rates on a
    narrowband scale), Bpl 20.0 (its PLC is better than none but we have no
    subjective data; chosen between G.729A's 19 and G.711+PLC's 25.1).
Codec delays (frame + look-ahead, ms) are from the codec specs: G.711 and G.722
frames of 20 ms as packetised (G.722 adds 1.5 ms algorithmic delay), G.729 10 +
5 ms (x2 frames per packet), Opus 20 + 6.5 ms (RFC 6716 default look-ahead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MOS_REPORT_MIN = 1.0
MOS_REPORT_MAX = 4.4


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecImpairment:
    name: str
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor
    delay_ms: float  # packetisation + algorithmic delay added to the network delay


CODECS: dict[str, CodecImpairment] = {
    c.name: c
    for c in (
        CodecImpairment(name="G711", ie=0.0, bpl=25.1, delay_ms=20.0),
        CodecImpairment(name="G711-NOPLC", ie=0.0, bpl=4.3, delay_ms=20.0),
        CodecImpairment(name="G729A", ie=11.0, bpl=19.0, delay_ms=25.0),
        CodecImpairment(name="G722", ie=0.0, bpl=25.1, delay_ms=21.5),
        CodecImpairment(name="OPUS", ie=0.0, bpl=20.0, delay_ms=26.5),
    )
}

# RTP encoding names -> table rows (PCMU/PCMA assumed decoded with PLC).
_ENCODING_TO_CODEC = {
    "PCMU": "G711",
    "PCMA": "G711",
    "G711": "G711",
    "G729": "G729A",
    "G722": "G722",
    "OPUS": "OPUS",
}


def codec_for_encoding(name: str) -> CodecImpairment:
    """Table row for an RTP encoding name; unknown names are treated as G.711 with PLC."""
    key = name.upper()
    return CODECS.get(key) or CODECS[_ENCODING_TO_CODEC.get(key, "G711")]


@dataclass(frozen=True, slots=True, kw_only=True)
class EModelParams:
    """G.107 parameters (Table 3 defaults). Delays in ms."""

    slr: float = 8.0
    rlr: float = 2.0
    stmr: float = 15.0
    lstr: float = 18.0
    ds: float = 3.0
    telr: float = 65.0
    wepl: float = 110.0
    t: float = 0.0  # mean one-way delay of the echo path
    tr: float = 0.0  # round-trip delay in a 4-wire loop
    ta: float = 0.0  # absolute one-way delay
    qdu: float = 1.0
    ie: float = 0.0
    bpl: float = 4.3
    ppl: float = 0.0  # percent
    burst_r: float = 1.0
    nc: float = -70.0
    nfor: float = -64.0
    ps: float = 35.0
    pr: float = 35.0
    a: float = 0.0


def _lg(x: float) -> float:
    return math.log10(x)


def delay_impairment_idd(ta_ms: float) -> float:
    """G.107 Idd, the impairment of a too-long absolute delay Ta (mT 100 ms, sT 1)."""
    if ta_ms <= 100.0:
        return 0.0
    x = _lg(ta_ms / 100.0) / _lg(2.0)
    return 25.0 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)


def effective_equipment_impairment(ie: float, bpl: float, ppl: float, burst_r: float) -> float:
    """Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl), Ppl in percent."""
    if ppl <= 0:
        return ie
    return ie + (95.0 - ie) * ppl / (ppl / burst_r + bpl)


def r_factor(p: EModelParams = EModelParams()) -> float:
    """The G.107 transmission rating factor R."""
    olr = p.slr + p.rlr
    nfo = p.nfor + p.rlr
    pre = p.pr + 10 * _lg(1 + 10 ** ((10 - p.lstr) / 10))
    nor = p.rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = p.ps - p.slr - p.ds - 100 + 0.004 * (p.ps - olr - p.ds - 14) ** 2
    no = 10 * _lg(10 ** (p.nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (p.slr + no)
    # simultaneous impairments
    xolr = olr + 0.2 * (64 + no - p.rlr)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * _lg(10 ** (-p.stmr / 10) + math.exp(-p.t / 4) * 10 ** (-p.telr / 10))
    ist = (
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )
    q = 37 - 15 * _lg(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * _lg(1 + 10**y + 10**z)
    is_ = iolr + ist + iq
    # delay impairments
    roe = -1.5 * (no - p.rlr)
    terv = p.telr - 40 * _lg((1 + p.t / 10) / (1 + p.t / 150)) + 6 * math.exp(-0.3 * p.t**2)
    if p.stmr < 9:
        terv += ist / 2
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-p.t))
    if p.stmr > 20:
        idte = math.sqrt(idte**2 + ist**2)
    rle = 10.5 * (p.wepl + 7) * (p.tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    idd = delay_impairment_idd(p.ta)
    ie_eff = effective_equipment_impairment(p.ie, p.bpl, p.ppl, p.burst_r)
    return ro - is_ - (idte + idle + idd) - ie_eff + p.a


def mos_from_r(r: float) -> float:
    """G.107 Annex B: R -> MOS_CQE (not clamped below 1 for 0 < R < 6.5)."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class Mos:
    r: float
    unclamped: float
    value: float  # clamped to MOS_REPORT_MIN..MOS_REPORT_MAX as the old service reported


def estimate_mos(
    *,
    codec: CodecImpairment,
    loss_percent: float,
    burst_ratio: float = 1.0,
    one_way_delay_ms: float = 0.0,
) -> Mos:
    """MOS from network figures: Ppl, BurstR and the one-way mouth-to-ear delay
    (which should already include jitter buffer and `codec.delay_ms`)."""
    t = max(one_way_delay_ms, 0.0)
    p = EModelParams(
        ie=codec.ie,
        bpl=codec.bpl,
        ppl=max(loss_percent, 0.0),
        burst_r=max(burst_ratio, 1.0),
        t=t,
        tr=2 * t,
        ta=t,
    )
    r = r_factor(p)
    m = mos_from_r(r)
    return Mos(r=r, unclamped=m, value=min(max(m, MOS_REPORT_MIN), MOS_REPORT_MAX))
