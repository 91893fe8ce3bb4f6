"""Tests for metamusic.song.timeline: segment coverage, lyric assignment, steps and the frame schedule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metamusic.errors import InputError
from metamusic.song.analysis import detect_beats, peak_volume, volume_envelope
from metamusic.song.audio import Audio
from metamusic.song.lyrics import LyricLine, Lyrics
from metamusic.song.timeline import (
    FrameSpan,
    Segment,
    beat_segments,
    frame_count,
    frame_schedule,
    interpolate_segments,
    keyframe_times,
    lyric_assignment_table,
    snap_to_frames,
    steps_for_segment,
)


def make_lyrics(*items) -> Lyrics:
    """Lyrics from (start, text) or (start, text, end) tuples."""
    lines = []
    for n, it in enumerate(items):
        start, text = it[0], it[1]
        end = it[2] if len(it) > 2 else None
        lines.append(LyricLine(start=start, text=text, end=end, line=n + 1))
    return Lyrics(lines=tuple(lines), path=None, format="test")


def spans(segs):
    return [(s.start, s.end, s.kind, s.text) for s in segs]


def assert_tiles(segs, duration):
    """Segments are indexed 0..n-1, contiguous, positive and cover [0, duration] exactly."""
    assert segs, "no segments"
    assert [s.index for s in segs] == list(range(len(segs)))
    assert segs[0].start == 0.0
    assert segs[-1].end == duration
    for a, b in zip(segs[:-1], segs[1:]):
        assert a.end == b.start
    for s in segs:
        assert s.duration > 0
        assert s.steps >= 1
        assert s.kind in ("text", "audio", "fused")
        assert s.audio_end > s.audio_start


# ------------------------------------------------------------------------ beat segments (m2v)


def test_lead_in_before_first_beat_is_covered():
    segs = beat_segments(3.0, np.array([1.0, 2.0]), None, ips=10, envelope=None)
    assert [(s.start, s.end) for s in segs] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert all(s.kind == "audio" and s.text is None for s in segs)
    assert [s.steps for s in segs] == [10, 10, 10]
    assert [(s.audio_start, s.audio_end) for s in segs] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


def test_beats_outside_song_and_duplicates_are_ignored():
    segs = beat_segments(3.0, np.array([2.0, -1.0, 0.0, 1.0, 1.0, 3.0, 5.0]), None, ips=10, envelope=None)
    assert [(s.start, s.end) for s in segs] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


def test_m2v_two_lyrics_in_one_beat_both_get_segments():
    lyr = make_lyrics((1.2, "alpha"), (1.6, "beta"))
    segs = beat_segments(4.0, np.array([1.0, 2.0, 3.0]), lyr, ips=10, envelope=None)
    assert spans(segs) == [
        (0.0, 1.0, "audio", None),
        (1.0, 1.6, "text", "alpha"),
        (1.6, 2.0, "text", "beta"),
        (2.0, 3.0, "audio", None),
        (3.0, 4.0, "audio", None),
    ]
    text = [s for s in segs if s.kind == "text"]
    assert [s.lyric_index for s in text] == [0, 1]
    assert all(s.text_weight == 1.0 and s.audio_weight == 0.0 for s in text)
    assert all(s.text_weight == 0.0 and s.audio_weight == 1.0 for s in segs if s.kind == "audio")


def test_m2v_three_lyrics_in_one_beat():
    lyr = make_lyrics((1.1, "a"), (1.4, "b"), (1.7, "c"))
    segs = beat_segments(2.0, np.array([1.0]), lyr, ips=10, envelope=None)
    assert spans(segs) == [
        (0.0, 1.0, "audio", None),
        (1.0, 1.4, "text", "a"),
        (1.4, 1.7, "text", "b"),
        (1.7, 2.0, "text", "c"),
    ]


def test_m2v_lyric_before_first_beat_drives_lead_in():
    segs = beat_segments(3.0, np.array([1.0, 2.0]), make_lyrics((0.3, "intro")), ips=10, envelope=None)
    assert spans(segs) == [(0.0, 1.0, "text", "intro"), (1.0, 2.0, "audio", None), (2.0, 3.0, "audio", None)]


def test_m2v_lyric_exactly_on_a_beat_belongs_to_segment_starting_there():
    segs = beat_segments(3.0, np.array([1.0, 2.0]), make_lyrics((1.0, "on beat")), ips=10, envelope=None)
    assert spans(segs) == [(0.0, 1.0, "audio", None), (1.0, 2.0, "text", "on beat"), (2.0, 3.0, "audio", None)]


def test_m2v_lyric_at_zero_and_after_song_end():
    lyr = make_lyrics((0.0, "first"), (9.0, "too late"))
    segs = beat_segments(3.0, np.array([1.0, 2.0]), lyr, ips=10, envelope=None)
    assert spans(segs)[0] == (0.0, 1.0, "text", "first")
    assert all(s.text != "too late" for s in segs)


def test_no_beats_gives_one_segment():
    segs = beat_segments(2.5, np.zeros(0), None, ips=4, envelope=None)
    assert [(s.start, s.end, s.steps) for s in segs] == [(0.0, 2.5, 10)]


def test_min_segment_drops_close_beats_but_not_lyrics():
    beats = np.array([0.05, 1.0, 1.02, 2.0, 2.98])
    segs = beat_segments(3.0, beats, None, ips=10, envelope=None, min_segment=0.1)
    assert keyframe_times(segs) == [0.0, 1.0, 2.0, 3.0]
    # fused: a lyric 0.03 s after the beat at 2.0 removes that beat, and the lyric boundary stays
    segs = beat_segments(3.0, beats, make_lyrics((2.03, "x")), ips=10, envelope=None, mode="fused", min_segment=0.1)
    assert keyframe_times(segs) == [0.0, 1.0, 2.03, 3.0]
    assert segs[-1].text == "x"


# ------------------------------------------------------------------------ beat segments (fused)


def test_fused_two_lyrics_in_one_beat_and_weights():
    lyr = make_lyrics((1.2, "alpha"), (1.6, "beta"))
    segs = beat_segments(
        4.0, np.array([1.0, 2.0, 3.0]), lyr, ips=10, envelope=None, mode="fused", text_weight=0.7, audio_weight=0.3
    )
    assert spans(segs) == [
        (0.0, 1.0, "audio", None),
        (1.0, 1.2, "audio", None),
        (1.2, 1.6, "fused", "alpha"),
        (1.6, 2.0, "fused", "beta"),
        (2.0, 3.0, "fused", "beta"),
        (3.0, 4.0, "fused", "beta"),
    ]
    for s in segs:
        if s.kind == "fused":
            assert (s.text_weight, s.audio_weight) == (0.7, 0.3)
            assert (s.audio_start, s.audio_end) == (s.start, s.end)
        else:
            assert (s.text_weight, s.audio_weight) == (0.0, 0.3)


def test_fused_srt_end_times_end_the_active_lyric():
    lyr = make_lyrics((1.0, "a", 1.5), (2.5, "b"), (3.0, "c", 3.2))
    segs = beat_segments(4.0, np.array([2.0]), lyr, ips=10, envelope=None, mode="fused")
    assert spans(segs) == [
        (0.0, 1.0, "audio", None),
        (1.0, 1.5, "fused", "a"),
        (1.5, 2.0, "audio", None),
        (2.0, 2.5, "audio", None),
        (2.5, 3.0, "fused", "b"),
        (3.0, 3.2, "fused", "c"),
        (3.2, 4.0, "audio", None),
    ]
    assert [s.lyric_index for s in segs if s.kind == "fused"] == [0, 1, 2]


def test_fused_lyric_before_first_beat():
    segs = beat_segments(3.0, np.array([1.0, 2.0]), make_lyrics((0.3, "intro")), ips=10, envelope=None, mode="fused")
    assert spans(segs) == [
        (0.0, 0.3, "audio", None),
        (0.3, 1.0, "fused", "intro"),
        (1.0, 2.0, "fused", "intro"),
        (2.0, 3.0, "fused", "intro"),
    ]


def test_fused_lyric_on_beat_makes_no_empty_segment():
    segs = beat_segments(3.0, np.array([1.0, 2.0]), make_lyrics((1.0, "x")), ips=10, envelope=None, mode="fused")
    assert keyframe_times(segs) == [0.0, 1.0, 2.0, 3.0]
    assert [s.kind for s in segs] == ["audio", "fused", "fused"]


def test_bad_lyrics_and_arguments_raise_input_error():
    with pytest.raises(InputError, match="increase strictly"):
        beat_segments(3.0, np.array([1.0]), make_lyrics((1.0, "a"), (1.0, "b")), ips=10, envelope=None)
    with pytest.raises(InputError, match="end time"):
        beat_segments(3.0, np.array([1.0]), make_lyrics((1.0, "a", 0.5)), ips=10, envelope=None, mode="fused")
    with pytest.raises(InputError, match=">= 0"):
        beat_segments(3.0, np.array([1.0]), make_lyrics((-1.0, "a")), ips=10, envelope=None)
    with pytest.raises(InputError, match="mode"):
        beat_segments(3.0, np.array([1.0]), None, ips=10, envelope=None, mode="nope")
    with pytest.raises(InputError, match="envelope"):
        beat_segments(3.0, np.array([1.0]), None, ips=0, envelope=None)
    with pytest.raises(InputError, match="duration"):
        beat_segments(0.0, np.array([1.0]), None, ips=10, envelope=None)


def test_volume_scaled_steps_in_segments():
    times = np.arange(0, 4, 0.032)
    values = np.where(times < 2.0, 0.0, 1.0)
    segs = beat_segments(4.0, np.array([2.0]), None, ips=0, envelope=(times, values))
    assert [s.steps for s in segs] == [round(2 * 10), round(2 * 120)]


# ------------------------------------------------------------------------ property tests

times_st = st.floats(min_value=0.0, max_value=60.0, allow_nan=False, allow_infinity=False)


@st.composite
def song_cases(draw):
    duration = draw(st.floats(min_value=0.05, max_value=60.0, allow_nan=False))
    beats = draw(st.lists(st.floats(min_value=-1.0, max_value=61.0, allow_nan=False), max_size=30))
    starts = sorted(set(draw(st.lists(st.floats(min_value=0.0, max_value=65.0, allow_nan=False), max_size=12))))
    items = []
    for k, s in enumerate(starts):
        end = draw(st.one_of(st.none(), st.floats(min_value=0.001, max_value=5.0, allow_nan=False)))
        items.append((s, f"line {k}", None if end is None else s + end))
    lyrics = draw(st.one_of(st.none(), st.just(make_lyrics(*items))))
    ips = draw(st.sampled_from([0, 1, 7.5, 100]))
    min_segment = draw(st.sampled_from([0.0, 0.0, 0.2]))
    return duration, np.array(beats), lyrics, ips, min_segment


def active_at(lyrics, t):
    """Brute force: index of the lyric active at time t (last started, end not passed)."""
    best = None
    for i, ln in enumerate(lyrics.lines):
        if ln.start <= t:
            best = i
    if best is None:
        return None
    end = lyrics.lines[best].end
    return best if end is None or t < end else None


ENV = (np.arange(0, 62, 0.032), np.abs(np.sin(np.arange(0, 62, 0.032))))


@settings(max_examples=150, deadline=None)
@given(song_cases())
def test_m2v_property_coverage_and_every_lyric_once(case):
    duration, beats, lyrics, ips, min_segment = case
    segs = beat_segments(duration, beats, lyrics, ips=ips, envelope=ENV, min_segment=min_segment)
    assert_tiles(segs, duration)
    if min_segment == 0:
        inside = {float(b) for b in beats if 0 < b < duration}
        assert inside <= set(keyframe_times(segs))
    in_song = [] if lyrics is None else [i for i, ln in enumerate(lyrics.lines) if ln.start < duration]
    driven = [s.lyric_index for s in segs if s.lyric_index is not None]
    assert sorted(driven) == in_song  # every lyric inside the song drives exactly one segment
    for s in segs:
        if s.lyric_index is not None:
            assert s.kind == "text"
            assert s.start <= lyrics.lines[s.lyric_index].start < s.end
            assert s.text == lyrics.lines[s.lyric_index].text
        else:
            assert s.kind == "audio"


@settings(max_examples=150, deadline=None)
@given(song_cases())
def test_fused_property_coverage_and_active_lyric(case):
    duration, beats, lyrics, ips, min_segment = case
    segs = beat_segments(duration, beats, lyrics, ips=ips, envelope=ENV, mode="fused", min_segment=min_segment)
    assert_tiles(segs, duration)
    for s in segs:
        want = None if lyrics is None else active_at(lyrics, s.start)
        # activity is constant within a segment: same lyric at its start and just before its end
        if lyrics is not None:
            assert active_at(lyrics, float(np.nextafter(s.end, s.start))) == want
        assert s.lyric_index == want
        assert s.kind == ("audio" if want is None else "fused")
    if lyrics is not None:
        driven = {s.lyric_index for s in segs if s.lyric_index is not None}
        assert driven == {i for i, ln in enumerate(lyrics.lines) if ln.start < duration}


@settings(max_examples=100, deadline=None)
@given(song_cases())
def test_interpolate_property(case):
    duration, _, lyrics, ips, _ = case
    ips = ips or 100
    segs = interpolate_segments(duration, lyrics, ips=ips, video_length=3.0)
    assert_tiles(segs, duration)
    for s in segs:
        assert s.steps == max(1, round(s.duration * ips))


# ------------------------------------------------------------------------ interpolation mode


def test_interpolate_halves_and_count():
    lyr = make_lyrics((2.0, "one"), (5.0, "two"))
    segs = interpolate_segments(10.0, lyr, ips=100)
    assert len(segs) == 1 + 2 * 2
    got = [(s.start, s.end, s.kind, s.text, s.audio_start, s.audio_end) for s in segs]
    assert got == [
        (0.0, 2.0, "audio", None, 0.0, 2.0),
        (2.0, 3.5, "text", "one", 2.0, 5.0),
        (3.5, 5.0, "audio", None, 2.0, 5.0),
        (5.0, 7.5, "text", "two", 5.0, 10.0),
        (7.5, 10.0, "audio", None, 5.0, 10.0),
    ]
    assert [s.steps for s in segs] == [200, 150, 150, 250, 250]
    assert [s.lyric_index for s in segs] == [None, 0, None, 1, None]
    assert all((s.text_weight, s.audio_weight) == (1.0, 0.0) for s in segs if s.kind == "text")
    assert all((s.text_weight, s.audio_weight) == (0.0, 1.0) for s in segs if s.kind == "audio")


def test_interpolate_first_lyric_at_zero_skips_lead_in():
    segs = interpolate_segments(4.0, make_lyrics((0.0, "a"), (2.0, "b")), ips=10)
    assert len(segs) == 2 * 2
    assert [(s.start, s.end, s.kind) for s in segs] == [
        (0.0, 1.0, "text"), (1.0, 2.0, "audio"), (2.0, 3.0, "text"), (3.0, 4.0, "audio")
    ]


def test_interpolate_without_lyrics_uses_fixed_windows():
    segs = interpolate_segments(25.0, None, ips=2, video_length=10.0)
    assert [(s.start, s.end, s.kind, s.steps) for s in segs] == [
        (0.0, 10.0, "audio", 20), (10.0, 20.0, "audio", 20), (20.0, 25.0, "audio", 10)
    ]
    exact = interpolate_segments(20.0, make_lyrics(), ips=2, video_length=10.0)
    assert [(s.start, s.end) for s in exact] == [(0.0, 10.0), (10.0, 20.0)]
    short = interpolate_segments(4.0, None, ips=2, video_length=10.0)
    assert [(s.start, s.end) for s in short] == [(0.0, 4.0)]
    with pytest.raises(InputError):
        interpolate_segments(4.0, None, ips=2, video_length=0.0)


# ------------------------------------------------------------------------ steps and volume


@pytest.mark.parametrize("ips", [0, 7.5, 10])
def test_faithful_steps_are_int_d_rate_plus_one(ips):
    """--faithful_steps: Music2Video's loop runs int(d * rate) + 1 steps per segment (issue 14)."""
    env = (np.arange(0, 6, 0.032), np.linspace(0, 1, len(np.arange(0, 6, 0.032))))
    beats = np.array([0.544, 1.024, 1.536, 2.016, 3.04, 4.032])
    lyrics = make_lyrics((1.1, "a"), (2.5, "b"))
    for mode in ("m2v", "fused", "interpolate"):
        kw = {"ips": ips, "envelope": env, "fps": 10}
        if mode == "interpolate":
            plain = interpolate_segments(6.0, lyrics, **kw)
            faithful = interpolate_segments(6.0, lyrics, **kw, faithful_steps=True)
        else:
            plain = beat_segments(6.0, beats, lyrics, mode=mode, **kw)
            faithful = beat_segments(6.0, beats, lyrics, mode=mode, **kw, faithful_steps=True)
        assert [(s.start, s.end) for s in faithful] == [(s.start, s.end) for s in plain]
        for s in faithful:
            rate = ips if ips else 10 + 110 * peak_volume(env, s.start, s.end)
            assert s.steps == int(s.duration * rate) + 1, (mode, s)
        assert sum(s.steps for s in faithful) != sum(s.steps for s in plain)
    assert steps_for_segment(0.5, 10, 0.0, faithful=True) == 6 and steps_for_segment(0.5, 10, 0.0) == 5
    assert steps_for_segment(0.04, 10, 0.0, faithful=True) == 1


def test_steps_for_segment():
    assert steps_for_segment(2.0, 10, 0.9) == 20  # fixed rate ignores volume
    assert steps_for_segment(2.0, 0, 0.0) == 20  # 10 steps/s when silent
    assert steps_for_segment(2.0, 0, 1.0) == 240  # 120 steps/s at peak volume
    assert steps_for_segment(2.0, 0, 0.5) == 130
    assert steps_for_segment(0.5, 0, 0.25) == round(0.5 * (10 + 27.5))
    assert steps_for_segment(0.001, 100, 0.0) == 1  # never zero
    assert steps_for_segment(0.0, 0, 0.0) == 1
    assert steps_for_segment(1.26, 10, 0.0) == 13  # rounded, not truncated
    with pytest.raises(InputError):
        steps_for_segment(1.0, -1, 0.0)


def test_peak_volume_window_and_nearest_frame():
    env = (np.array([0.0, 0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.5, 1.0, 0.2, 0.1]))
    assert peak_volume(env, 0.0, 0.2) == 0.5  # [start, end): the frame at 0.2 is excluded
    assert peak_volume(env, 0.0, 0.21) == 1.0
    assert peak_volume(env, 0.3, 10.0) == 0.2
    assert peak_volume(env, 0.31, 0.33) == 0.2  # shorter than a hop: nearest frame (0.3)
    assert peak_volume(env, 0.36, 0.38) == 0.1  # nearest is 0.4
    assert peak_volume((np.zeros(0), np.zeros(0)), 0.0, 1.0) == 0.0


def click_track(sr=16000, seconds=8.0, period=0.5, first=0.25):
    """Short decaying noise bursts every `period` seconds."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(sr * seconds), dtype=np.float32)
    n = int(0.03 * sr)
    burst = (rng.standard_normal(n) * np.exp(-np.arange(n) / (0.005 * sr))).astype(np.float32)
    for t in np.arange(first, seconds - 0.05, period):
        i = int(t * sr)
        y[i : i + n] += burst[: len(y) - i]
    return Audio(samples=0.5 * y / np.abs(y).max(), sample_rate=sr, path=None)


def test_detect_beats_on_click_track_at_120_bpm():
    audio = click_track()
    beats = detect_beats(audio)
    assert beats.ndim == 1 and len(beats) >= 10
    assert np.all(np.diff(beats) > 0)
    assert beats[0] > 0 and beats[-1] < audio.duration
    assert abs(float(np.median(np.diff(beats))) - 0.5) < 0.03
    # beats land on the clicks (0.25 + 0.5 k), within a couple of hops
    phase = np.abs(((beats - 0.25 + 0.25) % 0.5) - 0.25)
    assert float(np.median(phase)) < 0.05


def test_detect_beats_silence_is_empty():
    assert detect_beats(Audio(samples=np.zeros(16000, np.float32), sample_rate=16000)).size == 0


def test_volume_envelope_quiet_then_loud():
    sr = 16000
    rng = np.random.default_rng(1)
    y = rng.standard_normal(sr * 2).astype(np.float32)
    y[:sr] *= 0.01
    y[sr:] *= 0.5
    times, values = volume_envelope(Audio(samples=y, sample_rate=sr))
    assert times.shape == values.shape
    assert np.isclose(times[1] - times[0], 512 / sr)
    assert values.min() == 0.0 and values.max() == 1.0
    env = (times, values)
    assert peak_volume(env, 0.0, 0.9) < 0.05
    assert peak_volume(env, 1.1, 2.0) > 0.5
    flat = volume_envelope(Audio(samples=np.zeros(sr, np.float32), sample_rate=sr))
    assert np.all(flat[1] == 0.0)


# ------------------------------------------------------------------------ frames


def test_frame_schedule_one_step_per_frame():
    seg = Segment(0, 0.0, 1.0, 25, "audio", None, None, 0.0, 1.0, 0.0, 1.0)
    (span,) = frame_schedule([seg], 25)
    assert span == FrameSpan(0, 0, 25, tuple(range(25)))


def test_frame_schedule_more_steps_than_frames_and_fewer():
    a = Segment(0, 0.0, 1.0, 100, "audio", None, None, 0.0, 1.0, 0.0, 1.0)
    b = Segment(1, 1.0, 2.0, 2, "audio", None, None, 0.0, 1.0, 1.0, 2.0)
    sa, sb = frame_schedule([a, b], 10)
    assert sa.step_of_frame == tuple(range(0, 100, 10))
    assert (sb.first_frame, sb.n_frames) == (10, 10)
    assert sb.step_of_frame == (0,) * 5 + (1,) * 5


def test_frame_schedule_tiny_segment_owns_no_frames():
    segs = beat_segments(1.0, np.array([0.5, 0.501]), None, ips=10, envelope=None)
    fs = frame_schedule(segs, 10)
    assert [f.n_frames for f in fs] == [5, 0, 5]
    assert fs[1].step_of_frame == ()
    assert sum(f.n_frames for f in fs) == 10
    with pytest.raises(InputError):
        frame_schedule(segs, 0)


@settings(max_examples=150, deadline=None)
@given(
    duration=st.floats(min_value=0.01, max_value=400.0, allow_nan=False),
    fps=st.sampled_from([1, 10, 12.5, 23.976, 24, 25, 29.97, 30, 60, 120]),
    cuts=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=40),
    ips=st.sampled_from([0, 3, 25, 100]),
)
def test_frame_schedule_total_and_monotone(duration, fps, cuts, ips):
    beats = np.array(cuts) * duration
    segs = beat_segments(duration, beats, None, ips=ips, envelope=ENV)
    fs = frame_schedule(segs, fps)
    assert sum(f.n_frames for f in fs) == frame_count(duration, fps) == round(duration * fps)
    assert fs[0].first_frame == 0
    for f, g in zip(fs[:-1], fs[1:]):
        assert g.first_frame == f.first_frame + f.n_frames
    for f, s in zip(fs, segs):
        assert f.segment == s.index
        assert len(f.step_of_frame) == f.n_frames
        assert all(0 <= j < s.steps for j in f.step_of_frame)
        assert all(x <= y for x, y in zip(f.step_of_frame[:-1], f.step_of_frame[1:]))
        if f.n_frames:  # the last frame shows a step no earlier than its share of the segment
            t = (f.first_frame + f.n_frames - 1) / fps
            assert f.step_of_frame[-1] == min(s.steps - 1, max(0, math.floor((t - s.start) / s.duration * s.steps)))


# ------------------------------------------------------------------------ no segment shorter than a frame (issue 19)

BEATS_120 = np.array([0.544, 1.024, 1.536, 2.016, 2.528, 3.04, 3.52, 4.032, 4.544, 5.024, 5.536])


def assert_every_segment_owns_a_frame(segs, duration, fps):
    """Every segment lasts at least one frame period (the last at least half) and owns a frame."""
    for s in segs[:-1]:
        assert s.duration >= 1 / fps - 1e-9, s
    assert segs[-1].duration >= 0.5 / fps - 1e-9
    fs = frame_schedule(segs, fps)
    assert all(f.n_frames >= 1 for f in fs), [(f.segment, f.n_frames) for f in fs]
    assert sum(f.n_frames for f in fs) == frame_count(duration, fps)


@pytest.mark.parametrize("mode", ["m2v", "fused"])
def test_lyrics_a_few_ms_from_beats_cut_no_sliver(mode):
    # lyric starts and SRT ends 4-30 ms from the beats (issue 19: slivers of 0 frames got steps)
    lyrics = make_lyrics((1.0, "one", 1.52), (2.02, "two", 2.5), (3.6, "three", 3.996), (4.03, "four"),
                         (4.06, "five"))
    unsnapped = beat_segments(6.0, BEATS_120, lyrics, ips=10, envelope=None, mode=mode)
    assert any(f.n_frames == 0 for f in frame_schedule(unsnapped, 10))  # the problem
    segs = beat_segments(6.0, BEATS_120, lyrics, ips=10, envelope=None, mode=mode, fps=10)
    assert_tiles(segs, 6.0)
    assert_every_segment_owns_a_frame(segs, 6.0, 10)
    # every lyric still drives the segment holding its frame-aligned start (five moves a frame later)
    on_frames = [1.0, 2.0, 3.6, 4.0, 4.1]
    for i, ln in enumerate(lyrics.lines):
        own = [s for s in segs if s.lyric_index == i]
        assert len(own) == 1 if mode == "m2v" else len(own) >= 1
        assert own[0].start <= on_frames[i] + 1e-9 < own[0].end and own[0].text == ln.text
        if mode == "fused":
            assert abs(own[0].start - on_frames[i]) < 1e-9
    # the budget: steps follow the frames, no step spent on a sliver
    assert sum(s.steps for s in segs) == 60


def test_snap_to_frames_rules():
    lyrics = make_lyrics((0.02, "a"), (1.0, "b", 1.03), (1.04, "c", 1.97), (5.97, "d"))
    beats, snapped = snap_to_frames(6.0, np.array([0.04, 1.024, 1.96, 2.016, 3.03, 5.98]), lyrics, 10)
    starts = [ln.start for ln in snapped.lines]
    assert starts == [0.0, 1.0, 1.1, 5.9]  # nearest frame; a line on the previous one's frame moves a frame later
    assert [ln.end for ln in snapped.lines] == [None, None, 2.0, None]  # b's end reached c's start: dropped
    # 0.04 lands on 0 and 5.98 on the song's end (dropped), 1.96 and 2.016 on the same frame (one beat)
    assert beats.tolist() == [1.0, 2.0, 3.0]
    assert [ln.text for ln in snapped.lines] == ["a", "b", "c", "d"] and snapped.path == lyrics.path
    # lines crowding the song's end move back from it, one frame each
    _, late = snap_to_frames(1.0, np.zeros(0), make_lyrics((0.9, "x"), (0.92, "y"), (0.94, "z")), 10)
    assert [ln.start for ln in late.lines] == [0.7, 0.8, 0.9]
    with pytest.raises(InputError, match="too many lyric lines"):
        snap_to_frames(0.3, np.zeros(0), make_lyrics((0.0, "w"), (0.1, "x"), (0.12, "y"), (0.14, "z")), 10)


def test_interpolate_halves_on_frames():
    lyrics = make_lyrics((1.02, "a"), (1.13, "b"), (2.0, "c"))
    segs = interpolate_segments(3.0, lyrics, ips=10, fps=10)
    assert_tiles(segs, 3.0)
    assert_every_segment_owns_a_frame(segs, 3.0, 10)
    # a: [1.0, 1.1) is one frame, all text; b: [1.1, 2.0) is 9 frames, 5 text then 4 audio
    assert spans(segs)[1:4] == [(1.0, 1.1, "text", "a"), (1.1, 1.6, "text", "b"), (1.6, 2.0, "audio", None)]


@settings(max_examples=150, deadline=None)
@given(song_cases(), st.sampled_from([1, 10, 24, 29.97, 30]), st.sampled_from(["m2v", "fused", "interpolate"]))
def test_property_every_segment_owns_a_frame_and_every_lyric_drives_one(case, fps, mode):
    duration, beats, lyrics, ips, min_segment = case
    try:
        if mode == "interpolate":
            segs = interpolate_segments(duration, lyrics, ips=ips or 100, video_length=3.0, fps=fps)
        else:
            segs = beat_segments(duration, beats, lyrics, ips=ips, envelope=ENV, mode=mode, min_segment=min_segment,
                                 fps=fps)
    except InputError as exc:
        # only when some stretch holds more lyric starts than it has frames
        assert "too many lyric lines" in str(exc)
        n = frame_count(duration, fps)
        r = [round(ln.start * fps) for ln in lyrics.lines if ln.start < duration]
        assert n < 1 or any(sum(x >= k for x in r) > n - k for k in set(r))
        return
    assert_tiles(segs, duration)
    if frame_count(duration, fps) >= 1:
        assert_every_segment_owns_a_frame(segs, duration, fps)
    if lyrics is not None:
        driven = {s.lyric_index for s in segs if s.lyric_index is not None}
        assert driven == {i for i, ln in enumerate(lyrics.lines) if ln.start < duration}


# ------------------------------------------------------------------------ serialisation, logs


def test_segment_dict_roundtrip_through_json():
    lyr = make_lyrics((1.5, "héllo, world"))
    segs = beat_segments(4.0, np.array([1.0, 2.0]), lyr, ips=10, envelope=None, mode="fused")
    for s in segs:
        d = json.loads(json.dumps(s.to_dict()))
        assert Segment.from_dict(d) == s
    bad = segs[0].to_dict()
    del bad["steps"]
    with pytest.raises(InputError, match="steps"):
        Segment.from_dict(bad)
    bad = dict(segs[0].to_dict(), kind="video")
    with pytest.raises(InputError, match="kind"):
        Segment.from_dict(bad)
    bad = dict(segs[0].to_dict(), end=segs[0].start)
    with pytest.raises(InputError, match="end"):
        Segment.from_dict(bad)


def test_segment_dict_is_yaml_safe_with_numpy_inputs():
    import yaml

    segs = beat_segments(np.float64(3.0), np.array([1.0, 2.0]), None, ips=np.float64(10), envelope=None)
    text = yaml.safe_dump([s.to_dict() for s in segs])
    assert [Segment.from_dict(d) for d in yaml.safe_load(text)] == segs
    plain = Segment(0, 0.0, 1.0, 5, "text", None, None, np.float32(1.0), 0.0, 0.0, 1.0)  # no-song run, image prompt
    assert Segment.from_dict(yaml.safe_load(yaml.safe_dump(plain.to_dict()))) == plain


def test_keyframes_and_table():
    segs = beat_segments(3.0, np.array([1.0, 2.0]), make_lyrics((1.0, "a line of lyrics")), ips=10, envelope=None)
    assert keyframe_times(segs) == [0.0, 1.0, 2.0, 3.0]
    assert keyframe_times([]) == []
    table = lyric_assignment_table(segs)
    lines = table.splitlines()
    assert len(lines) == 2 + len(segs) + 1
    assert "a line of lyrics" in lines[3] and "text" in lines[3]
    assert "30 steps" in lines[-1]
