"""End to end in real headless Chromium: song + LRC in, timeline, an edited storyboard, a preview that
plays as long as the song, a render, and a re-render after an edit that keeps the earlier segments."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("METAMUSIC_CHROMIUM", "/usr/bin/chromium")
SONG_SECONDS = 4.0
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "studio.png"


@pytest.fixture(scope="module")
def song_and_lyrics(tmp_path_factory):
    from metamusic.song.audio import synth_song, write_wav

    folder = tmp_path_factory.mktemp("upload")
    write_wav(folder / "my song.wav", synth_song(SONG_SECONDS, sample_rate=22050, bpm=60, seed=1), 22050)
    (folder / "my song.lrc").write_text("[00:00.50]a red sun\n[00:02.00]a blue sea\n[00:03.00]a green hill\n")
    return folder / "my song.wav", folder / "my song.lrc"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM}: no Chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def _hashes(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run / "segments").glob("segment_*.mp4"))}


def _cell(page, row: int, column: int):
    return page.locator(f"#storyboard [data-testid=cell-{row}-{column}]")


def _edit_text(page, row: int, text: str) -> None:
    """Type ``text`` into the storyboard's text cell (column 4) of ``row`` (0-based)."""
    cell = _cell(page, row, 4)
    cell.dblclick()
    box = cell.locator("textarea, input").first
    box.fill(text)
    box.press("Enter")
    page.wait_for_function("([r, t]) => document.querySelector(`#storyboard [data-testid=cell-${r}-4]`)"
                           ".innerText.includes(t)", arg=[row, text])


def _click(page, button: str) -> None:
    """Press ``button`` and wait until the status line no longer shows the earlier message.

    While Gradio runs an event it overlays a timer on the status block, so its text changes at once
    yet still holds the earlier "render finished"; waiting only for *a* change let the next
    _wait_status return on that stale message, before the new render had even begun.
    """
    old = page.locator("#status").inner_text().strip()
    page.locator(button).click()
    page.wait_for_function(
        "o => { const t = document.querySelector('#status').innerText; return o ? !t.includes(o) : t.trim() !== o; }",
        arg=old, timeout=60_000)


def _wait_status(page, words: str, timeout_s: float) -> str:
    page.wait_for_function(
        "w => { const t = document.querySelector('#status').innerText; return t.includes(w) || t.includes('error'); }",
        arg=words, timeout=timeout_s * 1000)
    text = page.locator("#status").inner_text()
    assert words in text, text
    return text


def test_studio_end_to_end(studio, browser, song_and_lyrics):
    url, workdir, _ = studio
    song, lyrics = song_and_lyrics
    page = browser.new_page(viewport={"width": 1200, "height": 1500})
    foreign = []
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
    page.goto(url)
    # 1. the song, its lyrics and small, fast settings
    page.locator("#song input[type=file]").set_input_files(str(song))
    page.locator("#lyrics input[type=file]").set_input_files(str(lyrics))
    for name, value in (("width", "32"), ("height", "32"), ("steps", "3"), ("preview_steps", "2")):
        page.locator(f"#{name} input").fill(value)
    page.wait_for_timeout(1500)  # uploads
    _click(page, "#load")
    _wait_status(page, "loaded", 120)
    # 2. the timeline picture and the storyboard
    timeline = page.locator("#timeline img")
    timeline.wait_for()
    assert page.evaluate("() => document.querySelector('#timeline img').naturalWidth") > 100
    rows = page.locator("#storyboard [role=row][data-index]").count()
    assert rows >= 3
    project = next(p for p in workdir.iterdir() if (p / "uploads").is_dir())
    assert sorted(p.name for p in (project / "uploads").iterdir()) == ["my_song.lrc", "my_song.wav"]
    _edit_text(page, 2, "a castle in the clouds")
    # 3. a preview, played in the page for as long as the song
    _click(page, "#preview")
    _wait_status(page, "preview finished", 300)
    board = (project / "video.preview.run" / "storyboard.yaml").read_text()
    assert "a castle in the clouds" in board
    page.locator("#video video").wait_for()
    info = page.evaluate("""async () => {
        const v = document.querySelector('#video video');
        if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, {once: true}));
        v.muted = true; await v.play();
        await new Promise(r => setTimeout(r, 700));
        return {duration: v.duration, time: v.currentTime, tracks: v.querySelectorAll('track').length,
                width: v.videoWidth};
    }""")
    fps = json.loads((project / "video.preview.run" / "plan.json").read_text())["fps"]
    assert abs(info["duration"] - SONG_SECONDS) <= 1 / fps + 1e-3, info
    assert info["time"] > 0 and info["width"] > 0, info
    assert info["tracks"] >= 1, info  # WebVTT captions from the LRC
    assert (project / "video.preview.vtt").read_text().startswith("WEBVTT")
    # 4. a render, cancelled once a segment is done and resumed, then an edit and a render again
    run = project / "video.run"
    _click(page, "#render")
    page.wait_for_function("() => /[1-9][0-9]*\\/[0-9]+ tasks done/.test(document.querySelector('#status').innerText)",
                           timeout=300_000)
    page.locator("#cancel").click()
    _wait_status(page, "render cancelled", 120)
    kept = len(list((run / "tasks").glob("*.json")))
    total = len(json.loads((run / "plan.json").read_text())["tasks"])
    assert 1 <= kept < total
    _click(page, "#render")
    _wait_status(page, "render finished", 300)
    assert json.loads((run / "run.json").read_text())["this_run"]["tasks_run"] == total - kept  # resumed
    before = _hashes(run)
    assert len(before) == rows
    edit = max(r for r in range(1, rows) if _cell(page, r, 3).inner_text().strip() == "text")
    _edit_text(page, edit, "a lighthouse at night")
    _click(page, "#render")
    _wait_status(page, "render finished", 300)
    after = _hashes(run)
    names = sorted(before)
    assert sorted(after) == names
    assert all(after[k] == before[k] for k in names[:edit]), (before, after)  # earlier segments kept their bytes
    # re-rendered from the edited segment on (the tiny models' frames may not change with the text)
    assert json.loads((run / "run.json").read_text())["this_run"]["tasks_run"] == len(names) - edit
    assert "a lighthouse at night" in (run / "storyboard.yaml").read_text()
    page.locator("#downloads").wait_for()
    # the run folder's first storyboard page is shown once the render is done
    page.wait_for_function(
        "() => { const i = document.querySelector('#storyboard_page img'); return i && i.naturalWidth > 100; }")
    # 5. evaluate.py on the result
    _click(page, "#evaluate")
    _wait_status(page, "evaluated video.mp4", 300)
    assert (project / "evaluation" / "summary.json").is_file()
    page.wait_for_function("() => { const i = document.querySelector('#plot img'); return i && i.naturalWidth > 100; }")
    assert not foreign, foreign  # no CDN, no analytics: everything from the studio itself
    shot = workdir.parent / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("METAMUSIC_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    page.close()
