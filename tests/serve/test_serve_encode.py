"""serve/encode.py through serve/decode.py: Ogg/Opus and MP3 round trips keep the sound, the
stream is readable while it is being written, and hours of pieces add up without gaps or drift."""

from __future__ import annotations

import io
from math import gcd

import numpy as np
import pytest
from scipy.signal import correlate, resample_poly

from soundscape.serve.decode import decode_stream
from soundscape.serve.encode import FORMATS, StreamEncoder

FRAME = {"opus": 960, "mp3": 1152}
# Samples a decoder may add at the start: Opus's pre-skip is in its header and trimmed, but a
# streamed MP3 has no LAME header, so its encoder (576) and decoder (529) delays stay in.
DELAY = {"opus": 312, "mp3": 576 + 529}
# Waveform SNR after alignment; perceptual codecs are not waveform coders, so these are modest
# (measured on this signal at the default bit rates: opus 18 to 38 dB, mp3 26 dB).
MIN_SNR_DB = {"opus": 12.0, "mp3": 18.0}


def tone_and_sweep(rate: int, channels: int, seconds: float = 3.0) -> np.ndarray:
    """A 440 Hz tone plus a quieter log sweep 100 Hz -> 6 kHz (which makes alignment unique);
    the right channel is the left at 0.7, so a swap would show."""
    t = np.arange(int(seconds * rate)) / rate
    f0, f1 = 100.0, 6000.0
    k = np.log(f1 / f0) / seconds
    sweep = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    mono = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * sweep
    return np.stack([mono, 0.7 * mono][:channels], axis=1).astype(np.float32)


def encode(fmt: str, rate: int, pcm: np.ndarray, pieces) -> bytes:
    encoder = StreamEncoder(fmt, rate, pcm.shape[1])
    out, start = [], 0
    for size in pieces:
        out.append(encoder.encode(pcm[start:start + size]))
        start += size
    out.append(encoder.encode(pcm[start:]))
    out.append(encoder.close())
    return b"".join(out)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    frames = list(decode_stream(io.BytesIO(data)))
    return np.concatenate([f for f, _ in frames]), frames[0][1]


def align(ref: np.ndarray, out: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of ref and out, out shifted by the lag of their best correlation."""
    xc = correlate(out, ref, mode="full", method="fft")
    lags = np.arange(-len(ref) + 1, len(out))
    keep = np.abs(lags) <= max_lag
    lag = lags[keep][np.argmax(xc[keep])]
    out = out[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, out.dtype), out])
    n = min(len(ref), len(out))
    return ref[:n], out[:n]


@pytest.mark.parametrize("rate", [48_000, 44_100])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", ["opus", "mp3"])
def test_round_trip_keeps_length_pitch_and_waveform(fmt, channels, rate):
    pcm = tone_and_sweep(rate, channels)
    out, out_rate = decode(encode(fmt, rate, pcm, pieces=[4800] * 10))

    # Opus always decodes at 48 kHz; MP3 keeps a rate it supports.
    assert out_rate == (48_000 if fmt == "opus" else rate)
    assert out.shape[1] == channels and out.dtype == np.float32
    g = gcd(out_rate, rate)
    ref = resample_poly(pcm, out_rate // g, rate // g, axis=0) if out_rate != rate else pcm
    assert abs(len(out) - len(ref)) <= FRAME[fmt] + DELAY[fmt], (len(out), len(ref))

    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    peak_hz = np.argmax(spectrum) * out_rate / len(out)
    assert abs(peak_hz - 440) < 2, peak_hz

    for c in range(channels):
        a, b = align(ref[:, c], out[:, c], max_lag=2 * (FRAME[fmt] + DELAY[fmt]))
        snr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
        assert snr > MIN_SNR_DB[fmt], (c, snr)


@pytest.mark.parametrize("fmt", ["opus", "mp3"])
def test_bytes_come_out_while_streaming(fmt):
    """100 ms at a time: after 1 s in, what came out already decodes to >= 0.5 s."""
    rate = 48_000
    pcm = tone_and_sweep(rate, 2, seconds=1.0)
    encoder = StreamEncoder(fmt, rate, 2)
    assert encoder.content_type == FORMATS[fmt].content_type
    sent = b"".join(encoder.encode(pcm[i:i + 4800]) for i in range(0, len(pcm), 4800))
    out, out_rate = decode(sent)
    assert len(out) / out_rate >= 0.5
    encoder.close()


class LiveSocket:
    """A response body that encodes the next 100 ms only when the reader wants more bytes, and
    records how far ahead of the listener the input is."""

    def __init__(self, fmt: str, pcm: np.ndarray, rate: int):
        self.encoder, self.pcm, self.rate = StreamEncoder(fmt, rate, pcm.shape[1]), pcm, rate
        self.fed, self.buffer = 0, b""

    def read1(self, n: int) -> bytes:
        while not self.buffer and self.encoder is not None:
            if self.fed < len(self.pcm):
                self.buffer = self.encoder.encode(self.pcm[self.fed:self.fed + self.rate // 10])
                self.fed += self.rate // 10
            else:
                self.buffer, self.encoder = self.encoder.close(), None
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


@pytest.mark.parametrize("fmt", ["opus", "mp3"])
def test_listener_hears_each_frame_soon_after_it_is_fed(fmt):
    rate = 48_000
    socket = LiveSocket(fmt, tone_and_sweep(rate, 2, seconds=4.0), rate)
    heard, lags = 0.0, []
    for frames, out_rate in decode_stream(socket, fmt):
        heard += len(frames) / out_rate
        lags.append(min(socket.fed, len(socket.pcm)) / rate - heard)
    assert heard == pytest.approx(4.0, abs=0.05)
    assert max(lags) < 0.5, max(lags)


@pytest.mark.parametrize("fmt", ["opus", "mp3"])
def test_a_minute_in_random_pieces_has_no_gap_or_drift(fmt):
    rate, seconds = 44_100, 60.0
    t = np.arange(int(seconds * rate)) / rate
    pcm = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    pieces = np.random.default_rng(7).integers(1, 9000, size=len(pcm) // 4500)
    out, out_rate = decode(encode(fmt, rate, pcm, pieces))

    assert len(out) / out_rate == pytest.approx(seconds, abs=0.05)
    # A dropped or doubled frame would dent the level of a steady tone.
    block = out_rate // 20
    rms = np.sqrt(np.mean(out[: len(out) // block * block, 0].reshape(-1, block) ** 2, axis=1))
    assert rms[2:-2].min() > 0.8 * np.median(rms), rms[2:-2].min()


def test_bad_format_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match="'flac'") as info:
        StreamEncoder("flac", 48_000, 2)
    assert "opus" in str(info.value) and "mp3" in str(info.value)


def test_input_is_clipped_and_close_is_idempotent():
    encoder = StreamEncoder("opus", 48_000, 1)
    loud = 3.0 * tone_and_sweep(48_000, 1, seconds=0.5)
    data = encoder.encode(loud) + encoder.close()
    assert encoder.close() == b""
    with pytest.raises(ValueError, match="after close"):
        encoder.encode(loud)
    out, _ = decode(data)
    assert np.isfinite(out).all() and np.abs(out).max() < 1.3


def test_wrong_shape_names_it():
    with pytest.raises(ValueError, match=r"\(n, 2\).*\(480,\)"):
        StreamEncoder("mp3", 48_000, 2).encode(np.zeros(480, np.float32))
