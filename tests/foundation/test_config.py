"""Configuration layers and validation (pure), and the CLI's exit-2 contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError
from gateway.rtp.ports import PortRange


def test_defaults_match_spec_ports() -> None:
    c = Config.from_layers(env={})
    assert (c.sip_tls_port, c.h323_port, c.api_port) == (5061, 1720, 8080)
    assert c.sip_tcp_port is None and c.sip_udp_port is None
    assert c.media_range == PortRange(low=10000, high=60000)
    assert c.h323_media_range == PortRange(low=5100, high=6200)
    assert c.api_host == "127.0.0.1"
    assert c.path("database") == Path("var/vtcgw.sqlite3")


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "gw.toml"
    toml.write_text('api_port = 9001\nregion = "eu"\n[sip]\nsip_udp_port = 5062\n')
    c = Config.from_layers(toml_path=toml, env={"VTCGW_API_PORT": "9002", "VTCGW_REGION": "us"},
                           overrides={"region": "ap"})
    assert c.api_port == 9002  # env beats file
    assert c.region == "ap"  # flag beats env
    assert c.sip_udp_port == 5062  # tables in the file are flattened


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"media_range": "5000-5200"}, "h323_media_range"),  # overlaps 5100-6200
        ({"api_port": "70000"}, "api_port"),
        ({"api_port": "http"}, "api_port"),
        ({"media_range": "20-10"}, "media_range"),
        ({"sip_tls_port": "1720"}, "h323_port"),
        ({"no_such_key": "1"}, "no_such_key"),
        ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, "tls_cert"),
        ({"log_format": "xml"}, "log_format"),
        ({"api_token": "short"}, "api_token"),
        ({"session_expires_s": "30", "min_se_s": "90"}, "session_expires_s"),
    ],
)
def test_invalid_values_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_mapping(raw)
    assert err.value.key == key
    assert key in str(err.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("api_port = = 3")
    with pytest.raises(ConfigError) as err:
        Config.from_layers(toml_path=bad, env={})
    assert err.value.key == "config"


def _vtcgw(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--media-range", "5000-5200"], "h323_media_range"),
        (["--api-port", "99999"], "api_port"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "tls_cert"),
    ],
)
def test_serve_config_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    r = _vtcgw("serve", "--data-dir", str(tmp_path), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_env_is_read_by_the_cli(tmp_path: Path) -> None:
    import os

    r = _vtcgw("serve", "--data-dir", str(tmp_path),
               env={**os.environ, "VTCGW_H323_MEDIA_RANGE": "10000-10100"})
    assert r.returncode == 2 and "h323_media_range" in r.stderr


def test_unknown_flag_is_one_line() -> None:
    r = _vtcgw("serve", "--no-such-flag")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
