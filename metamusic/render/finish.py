"""Step 7 of a render: the final video (joined segments, the song, captions) and the sheets."""

from __future__ import annotations

from pathlib import Path

import torch

from metamusic.config import Config
from metamusic.files import atomic_path
from metamusic.media.captions import CaptionStyle
from metamusic.render.frame_mode import to_uint8
from metamusic.render.inputs import Inputs
from metamusic.render.plan import Plan
from metamusic.runfolder import RunFolder


def save_png(path: Path, image: torch.Tensor) -> None:
    from PIL import Image

    pixels = image if image.dtype == torch.uint8 else to_uint8(image)
    arr = pixels[0].permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def write_timeline_sheet(run: RunFolder, inputs: Inputs, plan: Plan) -> None:
    """timeline.png: the song's volume, beats, lyric markers and segment boundaries."""
    from metamusic.media.sheets import timeline_plot

    if inputs.audio is None:
        return
    song = plan.analysis
    lines = [(line.start, line.text) for line in inputs.lyrics.lines] if inputs.lyrics is not None else []
    timeline_plot(run.root / "timeline.png", inputs.duration, list(song.envelope_times), list(song.envelope_values),
                  list(song.beats), lines, [(s.start, s.end, s.kind) for s in plan.segments])


def panel_image(run: RunFolder, plan: Plan, index: int) -> torch.Tensor | None:
    """The picture of segment ``index`` for sheets: its last frame, or its keyframe (None for a segment
    inside a keyframe that spans several, so sheets show one panel per keyframe). (1, 3, H, W) uint8"""
    state = run.load_keyframe(index) if plan.keyframes else run.load_state(index)
    if state is None:
        return None
    pixels = state["image"] if plan.keyframes else state["last_image"]
    return pixels if pixels.dtype == torch.uint8 else to_uint8(pixels)


PANELS_PER_PAGE = 48  # storyboard pages: 6 columns x 8 rows


def write_contact_sheet(run: RunFolder, plan: Plan, upto: int) -> int:
    """The storyboard page holding segment ``upto``: the picture of each of its finished segments
    with its time and prompt. Returns the number of panels drawn.

    Pages hold PANELS_PER_PAGE segments, so redrawing one as segments finish costs the same
    however long the song is (``storyboard_001.png`` is the first page).
    """
    from metamusic.media.sheets import contact_sheet, panel_caption

    page = upto // PANELS_PER_PAGE
    first = page * PANELS_PER_PAGE
    segments = plan.segments[first : min(upto + 1, first + PANELS_PER_PAGE)]
    images = [(seg, panel_image(run, plan, seg.index)) for seg in segments]
    images = [(seg, img) for seg, img in images if img is not None]
    if not images:
        return 0
    panels = ((img[0].permute(1, 2, 0).numpy(), panel_caption(seg.index, seg.start, seg.end, seg.kind, seg.text))
              for seg, img in images)
    return contact_sheet(panels, run.storyboard_page(page))


def write_storyboard_pages(run: RunFolder, plan: Plan) -> int:
    """Every storyboard page (at the end of a render); returns the number of panels drawn."""
    last = len(plan.segments) - 1
    return sum(write_contact_sheet(run, plan, min(last, first + PANELS_PER_PAGE - 1))
               for first in range(0, len(plan.segments), PANELS_PER_PAGE))


def finish(config: Config, inputs: Inputs, run: RunFolder, plan: Plan) -> Path:
    """Concatenate the segment videos in order, mux the song and write the output atomically."""
    from metamusic.media.video import concat_videos

    segments = plan.segments
    videos = [run.segment_video(s.index) for s in segments if run.segment_video(s.index).exists()]
    audio = Path(config.music.audio) if config.music.audio else None
    duration = plan.duration
    concat_videos(videos, inputs.output, audio=audio, duration=duration)
    if config.output.captions in ("burn", "both") and inputs.lyrics is not None:
        _burn_captions(config, inputs)
    if config.output.output_video_fps > 9:
        _motion_interpolate(inputs.output, config.output.output_video_fps, duration, config.output.crf)
    if config.output.captions in ("srt", "both") and inputs.lyrics is not None:
        _soft_captions(inputs, burned=config.output.captions == "both")
    if Path(config.output.output).suffix.lower() == ".png":
        last = plan.keyframe_groups[-1][0] if plan.keyframes else segments[-1].index  # the last keyframe
        image = panel_image(run, plan, last)
        if image is not None:
            save_png(Path(config.output.output), image)
    return inputs.output


def caption_style(config: Config) -> CaptionStyle:
    o = config.output
    return CaptionStyle(font=o.caption_font, size_frac=o.caption_size, position=o.caption_position)


def _burn_captions(config: Config, inputs: Inputs) -> None:
    """Draw the active lyric on every frame of the final video (re-encoded, song copied)."""
    from metamusic.media.captions import (
        caption_intervals,
        caption_text_at,
        render_caption,
    )
    from metamusic.media.video import FrameWriter, mux_audio, read_frames

    intervals = caption_intervals(inputs.lyrics, inputs.duration)
    style = caption_style(config)
    fps = config.output.fps
    video = inputs.output
    silent = video.with_name(f".{video.stem}.captions.mp4")
    try:
        with FrameWriter(silent, fps, inputs.size, crf=config.output.crf) as writer:
            for k, frame in enumerate(read_frames(video)):  # frame k shows time k / fps
                writer.write(render_caption(frame, caption_text_at(intervals, k / fps), style))
        mux_audio(silent, Path(config.music.audio), video, duration=inputs.duration)
    finally:
        silent.unlink(missing_ok=True)


def _soft_captions(inputs: Inputs, burned: bool = False) -> None:
    """Write ``X.srt`` and ``X.vtt`` beside ``X.mp4`` and embed the SRT as a soft subtitle track
    (not shown by default when the captions are also ``burned`` into the frames)."""
    from metamusic.media.captions import (
        add_soft_subtitles,
        caption_intervals,
        write_srt,
        write_vtt,
    )

    cues = caption_intervals(inputs.lyrics, inputs.duration)
    srt = inputs.output.with_suffix(".srt")
    write_srt(cues, srt)
    write_vtt(cues, inputs.output.with_suffix(".vtt"))
    add_soft_subtitles(inputs.output, srt, inputs.output, default=not burned)


def _motion_interpolate(video: Path, fps: float, duration: float, crf: int) -> None:
    """Re-time the final video to ``fps`` with ffmpeg's minterpolate (VQGAN-CLIP's -ofps).

    minterpolate drops the last few frames; the last one is repeated so the video keeps exactly
    round(duration * fps) frames.
    """
    from metamusic.media.ffmpeg import run_ffmpeg

    with atomic_path(video) as tmp:
        run_ffmpeg(["-y", "-loglevel", "error", "-i", str(video),
                    "-filter:v", f"minterpolate=fps={fps:g}:mi_mode=mci,tpad=stop_mode=clone:stop_duration=1",
                    "-frames:v", str(max(1, round(duration * fps))), "-fps_mode", "cfr", "-r", f"{fps:g}",
                    "-c:v", "libx264", "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-c:a", "copy", str(tmp)],
                   f"motion-interpolating {video}")
