"""Every final video has round(duration * fps) frames, each lasting exactly 1 / fps (issue 19).

The SRT's lines start and end a few milliseconds to one frame from the synthetic song's beats
(0.544, 1.024, 1.536, ... s), so the plan holds one-frame segments between longer ones: the case
where joining the segment files by stream copy used to stretch frames to several periods.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from helpers import FPS, SONG_SECONDS, model_flags, run_main

SRT = """1
00:00:00,600 --> 00:00:00,930
a red sunrise over the hills

2
00:00:01,100 --> 00:00:01,200
the deep blue ocean

3
00:00:01,400 --> 00:00:01,460
a green forest at night

4
00:00:02,050 --> 00:00:02,420
snow on the mountains

5
00:00:03,050 --> 00:00:03,480
a city of lights
"""

MODES = {
    "m2v": ("generate.py", ["--mode", "m2v"]),
    "fused": ("generate.py", ["--mode", "fused"]),
    "interpolate": ("generate_interpolate.py", []),
    "keyframes": ("generate.py", ["--keyframes", "--keyframe_steps", "1"]),
}


def assert_every_frame_one_period(video, duration: float, fps: float) -> None:
    """``video`` has round(duration * fps) frames; frame k starts at k / fps and lasts exactly 1 / fps."""
    from metamusic.media.video import frame_timing, probe

    timing = frame_timing(video)
    n = round(duration * fps)
    period = 1 / Fraction(fps)
    assert len(timing) == n
    starts = [pts * timing.time_base for pts in timing.pts]
    assert starts == [k * period for k in range(n)], [float(s) for s in starts]
    lasts = [d * timing.time_base for d in timing.durations]
    assert all(d == period for d in lasts), [float(d) for d in lasts]
    info = probe(video)
    assert info.fps == fps and info.has_audio  # `ffmpeg -i` average rate agrees: "10 fps"


@pytest.mark.parametrize("mode", list(MODES))
def test_final_video_frames_each_last_one_period(mode, tiny_models, song_wav, tmp_path):
    from metamusic.runfolder import RunFolder
    from metamusic.song.timeline import frame_schedule

    srt = tmp_path / "lyrics.srt"
    srt.write_text(SRT, encoding="utf-8")
    script, extra = MODES[mode]
    out = tmp_path / "v.mp4"
    proc = run_main(script, ["-vid", "-ap", str(song_wav), "-lyr", str(srt), *model_flags(tiny_models),
                             "-gid", "cpu", "-s", "32", "32", "--fps", str(FPS), "-ips", "2", "-cuts", "2",
                             "-sd", "1", "--precision", "fp32", *extra, "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    segments = RunFolder(tmp_path / "v.run").read_storyboard()
    frames = [span.n_frames for span in frame_schedule(segments, FPS)]
    assert min(frames) >= 1 and 1 in frames  # one-frame segments, and none without a frame
    assert_every_frame_one_period(out, SONG_SECONDS, FPS)
