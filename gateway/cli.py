"""``vtcgw``: ``serve`` the daemon, or manage the ``meetings`` directory.

Exit status: 0 success, 2 usage or error (one line on stderr, naming what is wrong).
Flags of ``serve`` map onto :class:`gateway.config.Config` keys one to one
(``--sip-tls-port`` -> ``sip_tls_port``) and override the TOML file and the
``VTCGW_*`` environment.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from gateway.config import Config, ConfigError

# serve flags: (flag, config key); each is parsed by the config key's own parser
SERVE_FLAGS = (
    "data-dir", "bind-host", "advertise-host", "sip-tls-port", "sip-tcp-port", "sip-udp-port",
    "h323-port", "api-host", "api-port", "api-token", "media-range", "h323-media-range",
    "tls-cert", "tls-key", "tls-cert2", "tls-key2", "tls-client-ca", "node-id", "region", "log-format", "log-level", "drain-s",
    "webhooks", "quality-log", "cdr-dir", "recordings-dir", "database",
    "reflector-port", "reflector-token", "reflector-rate-pps", "reflector-total-pps",
)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _fail(message: str) -> int:
    print(f"vtcgw: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="vtcgw", description="SIP/H.323 dial-in gateway for meeting-room video systems")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    serve = sub.add_parser("serve", help="run the gateway daemon")
    serve.add_argument("--config", type=Path, help="TOML config file")
    for flag in SERVE_FLAGS:
        key = flag.replace("-", "_")
        serve.add_argument(f"--{flag}", dest=key, metavar=key.upper(), help=Config.doc(key))

    meetings = sub.add_parser("meetings", help="manage the meeting directory")
    msub = meetings.add_subparsers(dest="action", required=True, parser_class=OneLineParser)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = msub.add_parser(name, help=help_)
        sp.add_argument("--data-dir", type=Path)
        sp.add_argument("--config", type=Path)
        return sp

    c = add("create", "create a meeting; prints it as JSON")
    c.add_argument("--digits", type=int, choices=(10, 13), default=10)
    c.add_argument("--id", dest="meeting_id")
    c.add_argument("--title", default="")
    c.add_argument("--host", default="")
    c.add_argument("--region", default="")
    c.add_argument("--moderated", action="store_true")
    c.add_argument("--moderator-passcode")
    c.add_argument("--host-id", dest="host_ids", action="append", default=[],
                   help="a host's or delegate's 13-digit ID (repeatable)")
    ls = add("list", "list meetings as JSON lines")
    ls.add_argument("--limit", type=int, default=100000)
    for name, help_ in (("show", "show one meeting"), ("delete", "delete a meeting")):
        add(name, help_).add_argument("meeting_id")
    sp = add("set-passcode", "set the moderator passcode (omit --passcode to remove it)")
    sp.add_argument("meeting_id")
    sp.add_argument("--passcode")
    r = add("reset-id", "give a meeting a new random number (or --new-id)")
    r.add_argument("meeting_id")
    r.add_argument("--new-id")
    add("import", "import meetings from CSV").add_argument("file", type=Path)
    add("export", "export meetings to CSV (stdout or FILE)").add_argument("file", type=Path, nargs="?")
    return p


def _config(args: argparse.Namespace, keys: tuple[str, ...]) -> Config:
    overrides: dict[str, Any] = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    return Config.from_layers(toml_path=args.config, overrides=overrides)


def _meetings(args: argparse.Namespace) -> int:
    from gateway.meetings import csvio
    from gateway.meetings.ids import InvalidValue
    from gateway.meetings.store import SQLiteMeetingStore, StoreError

    config = _config(args, ("data_dir",))
    store = SQLiteMeetingStore(config.path("database"))
    out = sys.stdout
    try:
        match args.action:
            case "create":
                m = store.create(digits=args.digits, meeting_id=args.meeting_id, title=args.title,
                                 host=args.host, region=args.region, moderated=args.moderated,
                                 moderator_passcode=args.moderator_passcode, host_ids=tuple(args.host_ids))
                print(json.dumps(m.to_json()), file=out)
            case "list":
                for m in store.list(limit=args.limit):
                    print(json.dumps(m.to_json()), file=out)
            case "show":
                print(json.dumps(store.get(args.meeting_id).to_json(), indent=2), file=out)
            case "delete":
                store.delete(args.meeting_id)
            case "set-passcode":
                print(json.dumps(store.set_passcode(args.meeting_id, args.passcode).to_json()), file=out)
            case "reset-id":
                print(json.dumps(store.reset_id(args.meeting_id, args.new_id).to_json()), file=out)
            case "import":
                with open(args.file, newline="") as f:
                    n = csvio.import_csv(store, f)
                print(json.dumps({"imported": n}), file=out)
            case "export":
                if args.file:
                    with open(args.file, "w", newline="") as f:
                        csvio.export_csv(store, f)
                else:
                    csvio.export_csv(store, out)
    except (StoreError, InvalidValue, csvio.CsvError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    finally:
        store.close()
    return 0


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold() -> None:
    """Each TLS connection gets a 256 KiB read buffer (uvloop's SSL protocol) of which a few
    pages are ever written. glibc serves blocks that size with mmap, where untouched pages
    cost nothing, until the first such block is freed; then it raises its threshold and serves
    them from the heap, where they stay resident. Fixed at 128 KiB before the daemon's
    start-up allocates, a TLS call costs ~165 KB of RSS instead of ~340 (100 calls, measured
    as bench_load's memory step does). Not glibc: its own policy stays."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            fix_mmap_threshold()
            from gateway.daemon import run

            config = _config(args, tuple(f.replace("-", "_") for f in SERVE_FLAGS))
            return run(config)
        return _meetings(args)
    except ConfigError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
