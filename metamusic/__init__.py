"""MetaMusic: turn a song (and its lyrics) into a VQGAN-CLIP music video.

The package is laid out by responsibility:

- ``metamusic.models``: VQGAN, CLIP and Wav2CLIP networks and their checkpoint loaders.
- ``metamusic.tiny``: tiny random checkpoints in the official file formats (for tests).
- ``metamusic.song.audio`` / ``metamusic.song.lyrics``: reading the song and its lyric file.
- ``metamusic.song.timeline``: beats, segments and which prompt drives each segment.
- ``metamusic.optim``: the VQGAN-CLIP optimisation step (pure functions and a stepper).
- ``metamusic.media.video``: streaming frames to ffmpeg, muxing and concatenating.
- ``metamusic.render``: the pipelines behind ``generate.py`` and ``generate_interpolate.py``.

Importing the package has no side effects (no CUDA checks, seeding or logging set-up).
"""

__version__ = "0.1.0"
