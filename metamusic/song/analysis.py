"""What the song's audio says, with librosa as Music2Video uses it: beat times and the volume envelope
(min-max normalised mean mel power) that scales the steps of a segment when ``-ips 0``."""

from __future__ import annotations

import numpy as np

from metamusic.song.audio import Audio

__all__ = ["Envelope", "detect_beats", "peak_volume", "volume_envelope"]

# (frame times in seconds, min-max normalised mean mel power), both (F,) float64.
Envelope = tuple[np.ndarray, np.ndarray]


def detect_beats(audio: Audio, hop_length: int = 512) -> np.ndarray:
    """Beat times in seconds, sorted, strictly inside (0, duration): librosa's beat tracker as in Music2Video."""
    import librosa  # heavy import, only needed here

    y = np.asarray(audio.samples, dtype=np.float32)
    if y.size < hop_length * 2 or not np.any(y):
        return np.zeros(0)
    _, times = librosa.beat.beat_track(y=y, sr=audio.sample_rate, hop_length=hop_length, units="time")
    times = np.unique(np.asarray(times, dtype=np.float64))
    return times[(times > 0.0) & (times < audio.duration)]


def volume_envelope(audio: Audio, hop_length: int = 512) -> Envelope:
    """Min-max normalised mean mel power per frame (128 mels, fmax 8 kHz) and frame times (Music2Video)."""
    import librosa

    y = np.asarray(audio.samples, dtype=np.float32)
    if y.size == 0:
        return np.zeros(0), np.zeros(0)
    mel = librosa.feature.melspectrogram(
        y=y, sr=audio.sample_rate, n_mels=128, fmax=min(8000.0, audio.sample_rate / 2), hop_length=hop_length
    )  # (128, F) power
    power = mel.mean(axis=0).astype(np.float64)  # (F,)
    span = float(np.ptp(power))
    # The original divides by ptp unguarded (NaN on silence); a flat signal is "quiet" here.
    values = (power - power.min()) / span if span > 0 else np.zeros_like(power)
    times = librosa.frames_to_time(np.arange(power.size), sr=audio.sample_rate, hop_length=hop_length)
    return np.asarray(times, dtype=np.float64), values


def peak_volume(envelope: Envelope, start: float, end: float) -> float:
    """Peak volume over frames in [start, end); the frame nearest the window's centre if none is inside."""
    times, values = envelope
    if len(values) == 0:
        return 0.0
    inside = (times >= start) & (times < end)
    if np.any(inside):
        return float(values[inside].max())
    return float(values[int(np.argmin(np.abs(times - 0.5 * (start + end))))])
