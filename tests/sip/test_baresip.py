"""baresip 1.0.0 (a second, independent SIP UA) calls in over TLS and hangs up cleanly.

Config per INTEROP.md gotcha 7: net_interface 127.0.0.1, ausine at 48 kHz stereo, aubridge as
player, no stdio module with stdin on /dev/null. ``-t`` makes baresip quit, which ends the call
with a BYE.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.conftest import free_port, require_binary
from tests.sip.peers import make_cert, running_gateway, settings_for_tests, stop

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

CONFIG = """poll_method epoll
sip_listen 127.0.0.1:{port}
net_interface 127.0.0.1
audio_player aubridge,nil
audio_source ausine,440
audio_alert aubridge,nil
ausrc_srate 48000
ausrc_channels 2
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aufile.so
module aubridge.so
module rtcpsummary.so
module_app account.so
module_app menu.so
"""


async def test_baresip_tls_call_and_clean_hangup(tmp_path: Path) -> None:
    baresip = require_binary("baresip")
    cert, key = make_cert(tmp_path)
    conf = tmp_path / "baresip"
    conf.mkdir()
    (conf / "config").write_text(CONFIG.format(port=free_port(socket.SOCK_DGRAM)))
    (conf / "accounts").write_text("<sip:room@127.0.0.1;transport=tls>;regint=0\n")
    async with running_gateway(settings_for_tests(tls_port=0, cert_path=cert, key_path=key)) as gw:
        port = gw.ports["sip_tls"]
        proc = await asyncio.create_subprocess_exec(
            baresip, "-f", str(conf), "-t", "4", "-e", f"/dial sip:1234567890@127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            call, _control = await gw.wait("connected", timeout=15)
            call_id, reason = await gw.wait("ended", timeout=15)
            out, _ = await asyncio.wait_for(proc.communicate(), 15)
        finally:
            await stop(proc)
        text = out.decode("utf-8", "replace")
        assert call.transport.value == "tls" and call.target.meeting_id == "1234567890"
        assert call_id == call.call_id and reason == "remote-bye", text[-1500:]
        assert "session closed" not in text or "Operation not supported" not in text
        assert gw.metrics.counts["Sip2xxCodes"] >= 2  # 200 INVITE, 200 BYE
