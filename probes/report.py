"""`vtcprobe report`: one self-contained HTML page from the JSON of any probe runs.

Input: files written with `--json` by `ports`, `rtp`, `call` (an object with a
"probe" key) or `pcap` (a list of streams). Plots are drawn with matplotlib (Agg)
from the series in the JSON and embedded as PNG data URIs, so the page has no
external references and can be mailed as one file.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

from probes.common import ProbeError

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #d0d7de;padding-bottom:3px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px} th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f3f5f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#dafbe1;color:#116329;font-weight:600} .fail{background:#ffebe9;color:#a40e26;font-weight:600}
.verdict{display:inline-block;padding:2px 10px;border-radius:10px;font-size:13px;margin-left:8px}
.meta{color:#57606a;font-size:12px} img{max-width:100%;border:1px solid #d0d7de;margin:6px 0}
"""


def load(paths: list[str]) -> list[tuple[str, Any]]:
    runs = []
    for p in paths:
        try:
            runs.append((p, json.loads(Path(p).read_text())))
        except FileNotFoundError:
            raise ProbeError(f"{p}: no such file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ProbeError(f"{p}: not a probe JSON file ({exc})") from None
    return runs


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _esc(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="num">{_esc(c)}</td>' if isinstance(c, int | float) and not isinstance(c, bool)
            else f"<td>{_esc(c)}</td>" for c in r)
        out.append(f"<tr{cls}>{cells}</tr>")
    return "".join(out) + "</table>"


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = [[c["name"], f"{_esc(c['value'])} {c.get('unit', '')}", f"{c['op']} {_esc(c['limit'])} {c.get('unit', '')}",
             "PASS" if c["ok"] else "FAIL"] for c in checks]
    return _table(["check", "measured", "limit", "result"], rows, ["pass" if c["ok"] else "fail" for c in checks])


def _verdict(ok: bool) -> str:
    return f'<span class="verdict {"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span>'


def _rtp_section(r: dict[str, Any]) -> str:
    p = r["profile"]
    parts = [f"<p>profile <b>{_esc(p['name'])}</b>: {_esc(p['kbps'])} kbps, {p['packet_bytes']} B packets, "
             f"{_esc(p['pps'])} packets/s; {r['sent']} sent, {r['answered']} answered.</p>"]
    rows = [[d, r[d]["expected"], r[d]["lost"], r[d]["loss_pct"], r[d]["jitter_ms"], r[d]["max_jitter_ms"],
             r[d]["reordered"], r[d]["mos"]] for d in ("forward", "return")]
    parts.append(_table(["direction", "packets", "lost", "loss %", "jitter ms", "max jitter ms", "reordered", "MOS"], rows))
    rt = r["rtt_ms"]
    parts.append(_table(["RTT ms", "mean", "min", "median", "p95", "max"],
                        [["", rt["mean"], rt["min"], rt["median"], rt["p95"], rt["max"]]]))
    s = r.get("series")
    if s and s.get("t_s"):
        plt = _plt()
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
        a1.plot(s["t_s"], s["forward_jitter_ms"], label="forward jitter")
        a1.plot(s["t_s"], s["return_jitter_ms"], label="return jitter")
        a1.plot(s["t_s"], [x if x is not None else float("nan") for x in s["rtt_ms"]], label="RTT (median)")
        a1.set_ylabel("ms")
        a1.legend(fontsize=8)
        a1.grid(alpha=0.3)
        a2.bar(s["t_s"], s["round_trip_loss_pct"], width=0.8 * (s["t_s"][0] if s["t_s"] else 1))
        a2.set_ylabel("round-trip loss %")
        a2.set_xlabel("time (s)")
        a2.grid(alpha=0.3)
        fig.tight_layout()
        parts.append(f'<img alt="rtp probe over time" src="{_png(fig)}">')
    return "".join(parts)


def _ports_section(r: dict[str, Any]) -> str:
    parts = [_table(["service", "port", "state", "connect ms"],
                    [[t["name"], t["port"], t["state"], t["connect_ms"]] for t in r.get("tcp", [])])]
    tls = r.get("tls")
    if tls and tls["default"].get("ok"):
        d = tls["default"]
        parts.append(f"<p>TLS: {_esc(d['version'])} {_esc(d['cipher'])}, forward secret: {_esc(d['forward_secret'])}</p>")
        rows = [[k, "-" if v["accepted"] is None else ("accepted" if v["accepted"] else "refused"),
                 v.get("cipher") or v.get("note") or v.get("error")] for k, v in tls["versions"].items()]
        nfs = tls.get("non_forward_secret", {})
        rows.append(["TLSv1.2 RSA key exchange", "-" if nfs.get("accepted") is None else
                     ("accepted" if nfs["accepted"] else "refused"), nfs.get("cipher") or nfs.get("note") or nfs.get("error")])
        parts.append(_table(["offer", "result", "detail"], rows))
        c = tls["certificate"]
        parts.append(_table(["certificate", ""], [["subject", c["subject"]], ["issuer", c["issuer"]],
                                                  ["valid until", f"{c['not_after']} ({c['days_left']} days)"],
                                                  ["key", c["key"]], ["names", ", ".join(c["dns_names"] + c["ip_addresses"])],
                                                  [f"matches {c['name_checked']}", c["name_matches"]],
                                                  ["trusted", c["trusted"] if c["trusted"] else f"no ({c['trust_error']})"]]))
    for rg in (r.get("udp") or {}).get("ranges", []):
        parts.append(f"<p>UDP {_esc(rg['name'])} {rg['low']}-{rg['high']} (sampled through the reflector):</p>")
        parts.append(_table(["port", "state"], [[p["port"], p["state"]] for p in rg["ports"]]))
    return "".join(parts)


def _call_section(r: dict[str, Any]) -> str:
    rows = [[k, _esc(v)] for k, v in r.items() if k not in ("checks", "probe", "version", "target", "started",
                                                                "verdict", "events", "ours", "pjsua", "heard", "series")]
    parts = [_table(["field", "value"], rows)]
    if r.get("ours") or r.get("pjsua"):
        keys = sorted(set((r.get("ours") or {}) | (r.get("pjsua") or {})))
        parts.append(_table(["figure", "our NumPy analysis", "pjsua2 RTCP"],
                            [[k, (r.get("ours") or {}).get(k), (r.get("pjsua") or {}).get(k)] for k in keys]))
    if r.get("heard"):
        parts.append(_table(["audio heard", ""], [[k, _esc(v)] for k, v in r["heard"].items()]))
    return "".join(parts)


def _pcap_section(streams: list[dict[str, Any]]) -> str:
    rows = [[s["src"], s["dst"], s["ssrc"], s.get("encoding") or f"PT{s['payload_type']}", s["packets"], s["lost"],
             s["max_delta_ms"], s["mean_jitter_ms"], s["max_jitter_ms"], s["mos"], s["verdict"].upper()] for s in streams]
    parts = [_table(["src", "dst", "SSRC", "payload", "packets", "lost", "max delta ms", "mean jitter ms",
                     "max jitter ms", "MOS", "result"], rows, [s["verdict"] for s in streams])]
    if any(s.get("series") for s in streams):
        from probes.pcap import plot_streams

        buf = io.BytesIO()
        plot_streams(streams, buf)
        parts.append(f'<img alt="jitter and loss per stream" src="data:image/png;base64,'
                     f'{base64.b64encode(buf.getvalue()).decode()}">')
    return "".join(parts)


def render_html(runs: list[tuple[str, Any]], *, title: str = "vtcprobe report") -> str:
    body, verdicts = [], []
    for path, run in runs:
        if isinstance(run, list):  # pcap streams
            ok = all(s.get("verdict") == "pass" for s in run)
            verdicts.append(ok)
            body.append(f"<h2>Capture {html.escape(Path(path).name)}: {len(run)} RTP streams {_verdict(ok)}</h2>")
            body.append(_pcap_section(run))
            continue
        if not isinstance(run, dict) or "probe" not in run:
            raise ProbeError(f"{path}: not the JSON of a vtcprobe run")
        ok = run.get("verdict") == "pass"
        verdicts.append(ok)
        when = dt.datetime.fromtimestamp(run.get("started", 0), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        body.append(f"<h2>{html.escape(run['probe'])} probe of {html.escape(str(run.get('target')))} {_verdict(ok)}</h2>"
                    f'<p class="meta">{when} - {html.escape(Path(path).name)}</p>')
        body.append(_checks(run.get("checks", [])))
        section = {"rtp": _rtp_section, "ports": _ports_section, "call": _call_section}.get(run["probe"])
        if section:
            body.append(section(run))
    overall = all(verdicts) if verdicts else False
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)} {_verdict(overall)}</h1>"
            f'<p class="meta">generated {now} from {len(runs)} run(s)</p>{"".join(body)}</body></html>')


def write_report(paths: list[str], out: str | Path, *, title: str = "vtcprobe report") -> bool:
    runs = load(paths)
    if not runs:
        raise ProbeError("no input files")
    Path(out).write_text(render_html(runs, title=title), encoding="utf-8")
    return all((all(s.get("verdict") == "pass" for s in r) if isinstance(r, list) else r.get("verdict") == "pass")
               for _, r in runs)
