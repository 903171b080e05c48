"""Audio codecs for the conference mixer: bytes <-> int16 PCM at the codec's rate.

G.711 runs through lookup tables that are *built by* FFmpeg's pcm_mulaw/pcm_alaw codecs
(via PyAV, which aiortc uses) the first time they are needed, so a 20 ms frame is one
NumPy take() each way. G.722 and Opus use aiortc's decoders/encoders (PyAV/FFmpeg).
Every codec offers packet-loss concealment: G.711/G.722 repeat the last frame with a fade
(G.711 Appendix I in spirit), then silence.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from functools import cache

import av
import numpy as np
from av import AudioFrame

from gateway.rtp.types import Codec


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFormat:
    name: str  # PCMU, PCMA, G722, OPUS
    pcm_rate: int  # rate of decoded PCM
    rtp_clock: int  # RTP timestamp rate (G.722: 8000 though PCM is 16000, RFC 3551)
    frame_samples: int  # PCM samples per 20 ms


FORMATS = {
    "PCMU": AudioFormat(name="PCMU", pcm_rate=8000, rtp_clock=8000, frame_samples=160),
    "PCMA": AudioFormat(name="PCMA", pcm_rate=8000, rtp_clock=8000, frame_samples=160),
    "G722": AudioFormat(name="G722", pcm_rate=16000, rtp_clock=8000, frame_samples=320),
    "OPUS": AudioFormat(name="OPUS", pcm_rate=48000, rtp_clock=48000, frame_samples=960),
}


class UnsupportedCodec(Exception):
    """The negotiated codec is not one the mixer can decode."""


@cache
def _g711_tables(name: str) -> tuple[np.ndarray, np.ndarray]:
    codec = {"PCMU": "pcm_mulaw", "PCMA": "pcm_alaw"}[name]
    dec = av.CodecContext.create(codec, "r")
    dec.format, dec.layout, dec.sample_rate = "s16", "mono", 8000
    frames = dec.decode(av.Packet(bytes(range(256))))
    decode_table = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
    enc = av.CodecContext.create(codec, "w")
    enc.format, enc.layout, enc.sample_rate = "s16", "mono", 8000
    enc.time_base = fractions.Fraction(1, 8000)
    every = np.arange(-32768, 32768, dtype=np.int16)
    frame = AudioFrame.from_ndarray(every.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    encoded = b"".join(bytes(p) for p in enc.encode(frame))
    encode_table = np.frombuffer(encoded, dtype=np.uint8)  # index: sample + 32768
    return decode_table, encode_table


class AudioCodec:
    """Decoder + encoder + concealment state for one participant's audio."""

    def __init__(self, codec: Codec) -> None:
        name = codec.name.upper()
        if name not in FORMATS:
            raise UnsupportedCodec(f"cannot mix {codec.name}/{codec.clock_rate}")
        self.codec = codec
        self.fmt = FORMATS[name]
        self._last = np.zeros(self.fmt.frame_samples, dtype=np.int16)
        self._concealed = 0
        self._dec = self._enc = None
        self._etab: np.ndarray | None = None
        if name in ("PCMU", "PCMA"):
            self._dtab, self._etab = _g711_tables(name)
        elif name == "G722":
            from aiortc.codecs.g722 import G722Decoder, G722Encoder

            self._dec, self._enc = G722Decoder(), G722Encoder()
        else:
            from aiortc.codecs.opus import OpusDecoder, OpusEncoder

            self._dec, self._enc = OpusDecoder(), OpusEncoder()
        self._enc_pts = 0

    @property
    def g711_table(self) -> np.ndarray | None:
        """The encode table when this is G.711 (the mixer encodes many rows with one lookup)."""
        return self._etab if self._dec is None else None

    # -- decode -----------------------------------------------------------------------
    def decode(self, payload: bytes) -> np.ndarray:
        if self._dec is None:
            pcm = self._dtab[np.frombuffer(payload, dtype=np.uint8)]
        else:
            from aiortc.jitterbuffer import JitterFrame

            frames = self._dec.decode(JitterFrame(data=payload, timestamp=0))
            if not frames:
                return self.conceal()
            arr = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
            if self.fmt.name == "OPUS":  # aiortc decodes Opus as interleaved stereo
                arr = arr.reshape(-1, 2).mean(axis=1).astype(np.int16)
            pcm = arr
        self._last = pcm
        self._concealed = 0
        return pcm

    def conceal(self, samples: int | None = None) -> np.ndarray:
        """One lost frame: repeat the last one, fading out over three frames, then silence."""
        n = samples or self.fmt.frame_samples
        self._concealed += 1
        if self._concealed > 3 or not len(self._last):
            return np.zeros(n, dtype=np.int16)
        gain = 1.0 - self._concealed / 4
        base = np.resize(self._last, n)
        return (base * gain).astype(np.int16)

    # -- encode -----------------------------------------------------------------------
    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode one 20 ms frame at ``fmt.pcm_rate``."""
        if self._enc is None:
            return self._etab[pcm.astype(np.int32) + 32768].tobytes()
        layout = "mono"
        data = pcm.astype(np.int16)
        if self.fmt.name == "OPUS":
            data = np.repeat(data, 2)  # interleaved stereo
            layout = "stereo"
        frame = AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = self.fmt.pcm_rate
        frame.pts = self._enc_pts
        frame.time_base = fractions.Fraction(1, self.fmt.pcm_rate)
        self._enc_pts += len(pcm)
        payloads, _ = self._enc.encode(frame)
        return payloads[0] if payloads else b""

    def silence(self) -> bytes:
        return self.encode(np.zeros(self.fmt.frame_samples, dtype=np.int16))


@cache
def silence_payload(codec: Codec) -> bytes:
    """One 20 ms frame of silence in ``codec`` (a leg's first packet, opening NAT pinholes);
    b"" for codecs the mixer cannot encode. Computed once per codec: encoders are costly."""
    try:
        return AudioCodec(codec).silence()
    except UnsupportedCodec:
        return b""


def audio_codec_supported(codec: Codec) -> bool:
    return codec.name.upper() in FORMATS
