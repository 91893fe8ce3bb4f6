#!/usr/bin/env python
"""Re-create examples/paper_boat.mp3, the shipped 8-second example song (synthesised, 120 bpm).

It is MetaMusic's own: a kick on every beat, a chord pad that changes every bar and a melody
note per beat (metamusic.song.audio.synth_song), encoded to MP3 with the bundled ffmpeg. Its lyrics,
in every supported format, are lyrics/example.*.

    python examples/make_example_song.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from metamusic.song.audio import synth_song, write_wav
from metamusic.files import atomic_path
from metamusic.media.video import ffmpeg_exe

HERE = Path(__file__).resolve().parent
SECONDS, RATE, BPM, SEED = 8.0, 44100, 120, 2022


def main() -> int:
    out = HERE / "paper_boat.mp3"
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav(Path(tmp) / "song.wav", synth_song(SECONDS, sample_rate=RATE, bpm=BPM, seed=SEED), RATE)
        with atomic_path(out) as partial:
            cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", str(wav),
                   "-c:a", "libmp3lame", "-b:a", "128k", "-metadata", "title=Paper Boat",
                   "-metadata", "artist=The MetaMusic Examples", str(partial)]
            subprocess.run(cmd, check=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
