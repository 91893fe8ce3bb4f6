"""Audio loading: every common format to 16 kHz mono, probing, bad files, test-song synthesis."""

from __future__ import annotations

import logging
import os
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from metamusic.errors import InputError
from metamusic.song.audio import (
    Audio,
    AudioInfo,
    load_audio,
    probe_audio,
    synth_song,
    write_wav,
)

SOURCE_RATE = 44100
SECONDS = 1.5
FREQ = 440.0

# Length tolerance at 16 kHz: 1 ms for every format, plus one codec frame for the lossy ones
# whose encoders pad (mp3: 1152 samples, aac: 1024 samples at 44.1 kHz, about 26 ms). With the
# bundled ffmpeg, mp3 (LAME tag) and m4a (edit list) actually come back sample-exact.
FRAME_SLACK = {"wav": 0.0, "flac": 0.0, "ogg": 0.0, "mp3": 1152 / SOURCE_RATE, "m4a": 1024 / SOURCE_RATE}
ENCODERS = {"flac": ["-c:a", "flac"], "ogg": ["-c:a", "libvorbis"], "mp3": ["-c:a", "libmp3lame"],
            "m4a": ["-c:a", "aac"]}
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-y", "-loglevel", "error", *args], check=True)


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory):
    """1.5 s at 44.1 kHz stereo: 440 Hz at 0.6 on the left, at 0.2 on the right (in phase)."""
    t = np.arange(int(SECONDS * SOURCE_RATE)) / SOURCE_RATE
    tone = np.sin(2 * np.pi * FREQ * t)
    path = tmp_path_factory.mktemp("audio") / "stereo.wav"
    write_wav(path, np.stack([0.6 * tone, 0.2 * tone], axis=1), SOURCE_RATE)
    return path


@pytest.fixture(scope="module")
def encoded(stereo_wav):
    """The stereo test signal in every format, made with the bundled ffmpeg."""
    paths = {"wav": stereo_wav}
    for ext, codec in ENCODERS.items():
        paths[ext] = stereo_wav.with_suffix("." + ext)
        ffmpeg("-i", str(stereo_wav), *codec, str(paths[ext]))
    return paths


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3", "m4a"])
def test_every_format_loads_at_16k_mono_with_right_duration(encoded, ext):
    audio = load_audio(encoded[ext])
    assert isinstance(audio, Audio) and audio.sample_rate == 16000 and audio.path == encoded[ext]
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration - SECONDS) <= 0.001 + FRAME_SLACK[ext]
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(FREQ, abs=2.0)
    middle = audio.samples[4000:-4000]  # away from codec edges
    assert np.abs(middle).max() == pytest.approx(0.4, abs=0.03)  # (0.6 + 0.2) / 2: a mean downmix


def test_lossless_matches_soundfile_reference(encoded):
    """wav and flac decode to the same samples, and to soundfile's mean downmix at 44.1 kHz."""
    wav = load_audio(encoded["wav"], sample_rate=SOURCE_RATE).samples
    flac = load_audio(encoded["flac"], sample_rate=SOURCE_RATE).samples
    reference, _ = soundfile.read(encoded["wav"], dtype="float32")
    np.testing.assert_allclose(wav, reference.mean(axis=1), atol=1e-6)
    np.testing.assert_array_equal(wav, flac)


def test_other_sample_rate(encoded):
    audio = load_audio(encoded["ogg"], sample_rate=22050)
    assert audio.sample_rate == 22050 and abs(len(audio.samples) - SECONDS * 22050) <= 22


@pytest.mark.parametrize(
    "ext, codec", [("wav", "pcm_s16le"), ("flac", "flac"), ("ogg", "vorbis"), ("mp3", "mp3"), ("m4a", "aac")]
)
def test_probe_audio(encoded, ext, codec):
    info = probe_audio(encoded[ext])
    assert info == AudioInfo(duration=pytest.approx(SECONDS, abs=0.03), sample_rate=SOURCE_RATE, channels=2, codec=codec)


def test_video_with_audio_stream_is_fine(tmp_path):
    path = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=5:duration=1", "-f", "lavfi", "-i",
           "sine=frequency=300:duration=1", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(path))
    audio = load_audio(path)
    assert abs(audio.duration - 1.0) < 0.05 and dominant_frequency(audio.samples, 16000) == pytest.approx(300, abs=3)
    assert probe_audio(path).codec == "aac"


def test_silence_is_valid(tmp_path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(8000, np.float32), 16000)
    audio = load_audio(path)
    assert len(audio.samples) == 8000 and not audio.samples.any()


def test_odd_file_names_are_not_options_or_urls(stereo_wav, tmp_path):
    odd = tmp_path / "-i weird #?name: 歌.wav"
    odd.write_bytes(stereo_wav.read_bytes())
    assert abs(load_audio(odd).duration - SECONDS) < 0.001
    assert probe_audio(odd).channels == 2


# --------------------------------------------------------------------------- bad files


def make_bad(kind: str, tmp_path, stereo_wav, encoded):
    """A bad input of the given kind; returns its path."""
    if kind == "missing":
        return tmp_path / "missing.wav"
    if kind == "directory":
        (tmp_path / "folder.wav").mkdir()
        return tmp_path / "folder.wav"
    path = tmp_path / f"{kind}.bin"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("timestamp,text\n00:01,not a song\n" * 20, encoding="utf-8")
    elif kind == "png":
        from PIL import Image

        Image.new("RGB", (16, 16), "red").save(path, format="PNG")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "header_only_wav":
        path.write_bytes(stereo_wav.read_bytes()[:44])
    elif kind == "truncated_flac":
        path.write_bytes(encoded["flac"].read_bytes()[:100])
    elif kind == "silent_video":
        path = tmp_path / "silent.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=5:duration=1", "-c:v", "libx264", str(path))
    return path


@pytest.mark.parametrize(
    "kind, problem",
    [("missing", "no such audio file"), ("directory", "not a regular file"), ("empty", "empty file (0 bytes)"),
     ("text", "not an audio file ffmpeg can decode"), ("png", "not an audio file ffmpeg can decode"),
     ("random", "not an audio file ffmpeg can decode"), ("header_only_wav", "no audio could be decoded"),
     ("truncated_flac", "not an audio file ffmpeg can decode"),
     ("silent_video", "not an audio file ffmpeg can decode (it has no audio stream)")],
)
def test_bad_audio_raises_input_error_naming_the_file(kind, problem, tmp_path, stereo_wav, encoded):
    path = make_bad(kind, tmp_path, stereo_wav, encoded)
    with pytest.raises(InputError) as err:
        load_audio(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    with pytest.raises(InputError, match="^" + re.escape(f"{path}: ")):
        probe_audio(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(stereo_wav, tmp_path):
    path = tmp_path / "locked.wav"
    path.write_bytes(stereo_wav.read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            load_audio(path)
    finally:
        path.chmod(0o600)


def test_permission_error_is_reported_even_as_root(stereo_wav, monkeypatch):
    import metamusic.song.audio

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(metamusic.song.audio, "open", refuse, raising=False)
    with pytest.raises(InputError, match=re.escape(f"{stereo_wav}: cannot read the audio file (permission denied)")):
        load_audio(stereo_wav)


def test_truncated_mp3_loads_partially_with_warning(encoded, tmp_path, caplog):
    path = tmp_path / "cut.mp3"
    path.write_bytes(encoded["mp3"].read_bytes()[:4000])
    with caplog.at_level(logging.WARNING, logger="metamusic.song.audio"):
        audio = load_audio(path)
    assert 0 < audio.duration < 0.5
    assert str(path) in caplog.text and "truncated" in caplog.text


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, True])
def test_bad_sample_rate(encoded, rate):
    with pytest.raises(InputError, match="sample rate"):
        load_audio(encoded["wav"], sample_rate=rate)


# --------------------------------------------------------------------------- writing and synthesis


def test_write_wav_round_trip_and_atomicity(tmp_path):
    x = (0.5 * np.sin(np.linspace(0, 100, 4000))).astype(np.float32)
    path = write_wav(tmp_path / "out.wav", x, 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temp file left behind
    back, rate = soundfile.read(path, dtype="float32")
    assert rate == 8000 and np.abs(back - x).max() < 1 / 32767 + 1e-6
    with pytest.raises(ValueError):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]), 8000)
    assert not (tmp_path / "nan.wav").exists()


def test_synth_song_is_deterministic_and_beaty():
    song = synth_song(4.0, sample_rate=16000, bpm=120, seed=3)
    assert song.dtype == np.float32 and song.shape == (64000,)
    np.testing.assert_array_equal(song, synth_song(4.0, sample_rate=16000, bpm=120, seed=3))
    assert not np.array_equal(song, synth_song(4.0, sample_rate=16000, bpm=120, seed=4))
    assert 0.79 < np.abs(song).max() <= 0.8 + 1e-6
    # Energy in the first 30 ms after each beat (every 0.5 s) dwarfs the energy mid-beat.
    frame = 480
    on = [np.sum(song[i : i + frame] ** 2) for i in range(0, 64000, 8000)]
    off = [np.sum(song[i + 4000 : i + 4000 + frame] ** 2) for i in range(0, 64000, 8000)]
    assert min(on) > 4 * max(off)


def test_synth_song_beats_found_by_librosa():
    librosa = pytest.importorskip("librosa")
    song = synth_song(8.0, sample_rate=16000, bpm=120, seed=0)
    tempo, beats = librosa.beat.beat_track(y=song, sr=16000, hop_length=512)
    times = librosa.frames_to_time(beats, sr=16000, hop_length=512)
    assert float(np.atleast_1d(tempo)[0]) == pytest.approx(120, rel=0.05)
    assert np.all(np.abs(times - np.round(times * 2) / 2) < 0.05)  # on the 0.5 s grid
