"""The rendered video plays in a real browser with its captions: headless Chromium driven by Playwright.

The browser is the system's (Debian: ``apt-get install chromium``); Playwright never downloads one
here. The page is served from a local ``http.server`` thread so the ``<track>`` is same-origin,
as it would be on a web site.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from helpers import FPS, LYRICS, SONG_SECONDS, model_flags, run_main

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    """The system Chromium: $METAMUSIC_CHROMIUM, else chromium / chromium-browser on PATH."""
    for candidate in (os.environ.get("METAMUSIC_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _requirements() -> tuple[object, str]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    chromium = _chromium()
    missing = [name for name, ok in (("playwright (pip install -r requirements-test.txt)", sync_playwright),
                                     ("chromium (apt-get install -y chromium)", chromium)) if not ok]
    if missing:
        pytest.skip("browser playback test needs " + " and ".join(missing))
    return sync_playwright, chromium


PAGE = """<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<video id="v" src="v.mp4" muted playsinline preload="auto">
  <track kind="captions" src="v.vtt" srclang="en" label="Lyrics" default>
</video>
"""


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """http.server plus byte ranges (``Range: bytes=a-b``), which browsers need to seek in a video
    (as any web server serves them); quiet."""

    def send_head(self):
        rng = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not (rng.startswith("bytes=") and path.is_file()):
            return super().send_head()
        size = path.stat().st_size
        first, _, last = rng[len("bytes="):].split(",")[0].partition("-")
        start = int(first) if first else max(0, size - int(last))
        end = min(int(last), size - 1) if first and last else size - 1
        if start >= size:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(remaining))

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def served_video(tiny_models, song_wav, tmp_path_factory):
    """A short song rendered with --captions srt, served on 127.0.0.1: the page's URL."""
    _requirements()
    d = tmp_path_factory.mktemp("browser")
    lyrics = d / "lyrics.csv"
    lyrics.write_text(LYRICS, encoding="utf-8")
    proc = run_main("generate.py", ["-ap", str(song_wav), "-lyr", str(lyrics), *model_flags(tiny_models),
                                    "-gid", "cpu", "-s", "32", "32", "--fps", str(FPS), "-ips", "2", "-cuts", "2",
                                    "-sd", "3", "--precision", "fp32", "--no_sheets", "--captions", "srt",
                                    "-o", str(d / "v.mp4")], d)
    assert proc.returncode == 0, proc.stderr
    assert (d / "v.vtt").is_file()
    (d / "index.html").write_text(PAGE, encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(d)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def test_video_plays_in_chromium_with_its_vtt_captions(served_video):
    sync_playwright, chromium = _requirements()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(served_video)
            page.wait_for_function("document.getElementById('v').readyState >= 1", timeout=30_000)
            video_error = page.evaluate("document.getElementById('v').error && document.getElementById('v').error.code")
            assert not video_error, f"Chromium cannot decode the video (MediaError {video_error}): H.264 missing?"

            # Duration: the song's, within one frame.
            duration = page.evaluate("document.getElementById('v').duration")
            assert abs(duration - SONG_SECONDS) <= 1.0 / FPS, duration

            # Playback advances.
            page.evaluate("document.getElementById('v').play()")
            page.wait_for_function("document.getElementById('v').currentTime > 0.3", timeout=30_000)
            t0 = page.evaluate("document.getElementById('v').currentTime")
            page.wait_for_function(f"document.getElementById('v').currentTime > {t0} + 0.2", timeout=30_000)
            assert not page.evaluate("document.getElementById('v').paused")
            page.evaluate("document.getElementById('v').pause()")

            # A cue is active mid-song: the lyric sung at 3.5 s (LYRICS: 00:03 'the deep blue ocean').
            track_mode = page.evaluate("document.getElementById('v').textTracks[0].mode")
            assert track_mode == "showing"  # the default track is loaded and shown
            page.wait_for_function("document.querySelector('track').readyState === 2", timeout=30_000)
            page.evaluate("""() => new Promise(done => {
                const v = document.getElementById('v');
                v.addEventListener('seeked', () => done(), {once: true});
                v.currentTime = 3.5;
            })""")
            page.wait_for_function("document.getElementById('v').textTracks[0].activeCues.length > 0",
                                   timeout=30_000)
            cues = page.evaluate("Array.from(document.getElementById('v').textTracks[0].activeCues, c => c.text)")
            assert cues == ["the deep blue ocean"]
        finally:
            browser.close()
