"""The beat pulse of keyframe mode (--keyframe_every) and the mean of several segments' targets."""

from __future__ import annotations

import math

import pytest
import torch

from metamusic.errors import InputError
from metamusic.optim.interpolate import (
    PULSE_STRENGTH,
    beat_pulse,
    beat_time,
    interpolate_latents,
    interpolate_on_beats,
)
from metamusic.optim.prompts import Target, mean_targets, target_loss


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_beat_pulse_is_a_fast_attack_and_a_slow_decay():
    a = PULSE_STRENGTH
    assert beat_pulse(0.0) == 0.0 and beat_pulse(1.0) == pytest.approx(1.0)
    xs = [k / 100 for k in range(101)]
    values = [beat_pulse(x) for x in xs]
    assert all(b >= v for v, b in zip(values, values[1:]))  # never goes back
    h = 1e-6
    assert (beat_pulse(h) - beat_pulse(0.0)) / h == pytest.approx(1 + 2 * a, rel=1e-4)  # speed right after a beat
    assert (beat_pulse(1.0) - beat_pulse(1 - h)) / h == pytest.approx(1 - a, rel=1e-4)  # ... and just before the next
    assert beat_pulse(0.5, strength=0.0) == 0.5  # strength 0: constant speed
    assert beat_pulse(-1.0) == 0.0 and beat_pulse(2.0) == pytest.approx(1.0)
    with pytest.raises(InputError):
        beat_pulse(0.5, strength=1.5)


def test_beat_time_keeps_the_beats_and_is_monotone():
    beats = [0.0, 0.5, 1.25, 1.5, 2.0]
    assert beat_time(beats, beats) == pytest.approx(beats)
    ts = [k / 97 for k in range(-20, 230)]  # also before the first and after the last beat
    warped = beat_time(ts, beats)
    assert all(b >= a for a, b in zip(warped, warped[1:]))
    assert beat_time(-1.0, beats) == [-1.0] and beat_time(3.0, beats) == [3.0]
    # Inside a beat: b_j + (b_j+1 - b_j) * beat_pulse(fraction).
    assert beat_time(0.5 + 0.75 * 0.2, beats)[0] == pytest.approx(0.5 + 0.75 * beat_pulse(0.2))
    with pytest.raises(InputError):
        beat_time(0.3, [1.0, 0.0])


def test_latent_change_peaks_right_after_every_beat():
    """Four keyframes over 16 beats (--keyframe_every 4): the frame-to-frame change of the
    latent is largest on the first frame after each beat, also on the beats between keyframes."""
    fps, beat, n_beats = 30, 0.5, 16
    beats = [k * beat for k in range(n_beats + 1)]  # segment boundaries, 15 frames per beat
    keys = torch.cat([rand(1, 8, 4, 4, seed=s) for s in range(4)])  # (4, C, h, w)
    times = [0.0, 3.0, 5.0, 8.0]  # pinned ends, group middles: every keyframe on a beat
    frames = [f / fps for f in range(n_beats * 15 + 1)]
    z = interpolate_on_beats(keys, times, frames, beats)  # (F, C, h, w)
    change = (z[1:] - z[:-1]).flatten(1).norm(dim=1)  # (F - 1,) change from frame f to f + 1
    for j in range(n_beats):
        inside = change[15 * j : 15 * (j + 1)]  # the steps of beat j
        assert int(inside.argmax()) == 0, (j, inside)
        assert inside[0] > 4 * inside[-1]  # surging after the beat, drifting before the next one
    for j in range(1, n_beats):  # and the change jumps up at every beat
        assert change[15 * j] > 3 * change[15 * j - 1], j
    # The keyframes are still hit at their times, and the ends are held beyond them.
    for key, t in zip(keys, times):
        torch.testing.assert_close(interpolate_on_beats(keys, times, t, beats)[0], key, atol=1e-5, rtol=1e-5)


def test_eased_interpolation_rests_on_the_beats_without_the_pulse():
    """Without the pulse (one keyframe per segment) the eased change is smallest at keyframes:
    the default's motion, unchanged by --keyframe_every."""
    keys = torch.cat([rand(1, 8, 4, 4, seed=s) for s in range(3)])
    times = [0.25, 0.75, 1.25]
    frames = [f / 40 for f in range(10, 51)]
    z = interpolate_latents(keys, times, frames)
    change = (z[1:] - z[:-1]).flatten(1).norm(dim=1)
    assert change[0] < 0.1 * change.max() and change[19] < 0.1 * change.max()  # at 0.25 s and 0.75 s


def test_mean_targets_loss_is_the_weighted_mean_of_the_groups_losses():
    shared = Target(rand(16, seed=1), 0.5)  # as a -p prompt: the same object in every segment
    text = Target(rand(16, seed=2), 1.0, stop=0.2)
    audio_a, audio_b = Target(rand(16, seed=3)), Target(rand(16, seed=4), 2.0)
    away = Target(rand(16, seed=1), -0.25)  # same embedding as `shared`, other sign: not merged
    groups = [[shared, text], [shared, audio_a], [shared, audio_b, away]]
    shares = [0.5, 0.25, 1.0]
    merged = mean_targets(groups, shares)
    assert len(merged) == 5  # shared once, text, two audio targets, the negative one
    images = rand(6, 16, seed=9)
    expected = sum(s * sum(target_loss(images, t) for t in g) for g, s in zip(groups, shares)) / sum(shares)
    torch.testing.assert_close(sum(target_loss(images, t) for t in merged), expected)
    # The gradient too (stop floors it per target, which merging keeps).
    x = images.clone().requires_grad_(True)
    sum(target_loss(x, t) for t in merged).backward()
    y = images.clone().requires_grad_(True)
    (sum(s * sum(target_loss(y, t) for t in g) for g, s in zip(groups, shares)) / sum(shares)).backward()
    torch.testing.assert_close(x.grad, y.grad)
    assert mean_targets([[text, audio_a]], [3.0]) == [text, audio_a]  # one group: as it is
    with pytest.raises(InputError):
        mean_targets(groups, [1.0, 1.0])
    with pytest.raises(InputError):
        mean_targets(groups, [0.0, 0.0, 0.0])
    assert not math.isnan(float(expected))
