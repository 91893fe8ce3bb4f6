"""Timed lyrics end to end with the tiny random Whisper checkpoint: transcribe, align, render with --align.

The tiny model's weights are random, so its "words" are arbitrary tokens; decoding is greedy, so
they are the same on every run. What is checked is what holds for any model: the real loading
and recognition path runs, words come with times inside the song, files are read back by
MetaMusic's own parser, alignment puts a line where its words were recognised, bad input gives
one line and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import model_flags, run_main

from metamusic.cli import run_cli
from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.song.audio import probe_audio
from metamusic.song.lyrics import read_lyrics

whisper = pytest.importorskip("whisper", reason="openai-whisper (the metamusic[lyrics] extra) is not installed")

from metamusic import lyricsync  # noqa: E402
from metamusic.lyricsync.__main__ import main as lyricsync_main  # noqa: E402

SONG_SECONDS = 6.0  # the song_wav fixture


def cli(argv: list[str]) -> int:
    return run_cli(lyricsync_main, argv)


@pytest.fixture(scope="module")
def recognised(tiny_models, song_wav):
    """The tiny model's words on the test song (loaded and run once for the module)."""
    from metamusic.models.whisper_loader import load_whisper

    model = load_whisper(tiny_models["whisper"])
    return lyricsync.recognise_words(model, lyricsync.load_song(song_wav), language="en")


@pytest.fixture(scope="module")
def sung_lyrics(recognised, tmp_path_factory) -> tuple[Path, list[list]]:
    """A plain lyric text made of the recognised words, two words a line (with a blank line)."""
    groups = [recognised[i:i + 2] for i in range(0, len(recognised), 2)]
    path = tmp_path_factory.mktemp("lyr") / "lyrics.txt"
    text = "\n\n".join(" ".join(w.text.strip() for w in g) for g in groups)
    path.write_text(text + "\n", encoding="utf-8")
    return path, groups


def test_the_tiny_model_recognises_words_inside_the_song(recognised, song_wav):
    duration = probe_audio(song_wav).duration
    assert len(recognised) >= 2, recognised  # a deterministic, non-empty transcription
    assert all(0 <= w.start <= w.end <= duration for w in recognised)
    assert [w.start for w in recognised] == sorted(w.start for w in recognised)


def test_recognition_leaves_torch_thread_count_as_it_was(tiny_models, song_wav):
    """Whisper's word timing raised torch's threads to the core count; the render after it must
    keep the count it was given (oversubscribed threads slow every later step)."""
    import torch

    from metamusic.models.whisper_loader import load_whisper

    model = load_whisper(tiny_models["whisper"])
    given = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lyricsync.recognise_words(model, lyricsync.load_song(song_wav), language="en")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(given)


def test_transcribe_writes_a_music2video_csv_that_metamusic_reads(tiny_models, song_wav, recognised, tmp_path,
                                                                   capsys):
    out = tmp_path / "song.csv"
    assert cli(["transcribe", str(song_wav), "-o", str(out), "--model", tiny_models["whisper"],
                "--language", "en", "--device", "cpu"]) == 0
    assert out.read_text(encoding="utf-8").startswith("timestamp,text\n")
    lyrics = read_lyrics(out)
    duration = probe_audio(song_wav).duration
    assert lyrics.format == "m2v-csv"
    assert lyrics.lines and all(0 <= ln.start < duration for ln in lyrics.lines)

    def squeeze(text: str) -> str:
        return "".join(text.split())

    assert squeeze("".join(ln.text for ln in lyrics.lines)) == squeeze("".join(w.text for w in recognised))
    assert lyrics.lines[0].start == int(recognised[0].start)  # MM:SS: whole seconds
    assert f"wrote {out}" in capsys.readouterr().out


def test_align_places_each_line_where_its_words_were_recognised(tiny_models, song_wav, sung_lyrics, tmp_path):
    lyrics_txt, groups = sung_lyrics
    out = tmp_path / "aligned.lrc"
    assert cli(["align", str(song_wav), str(lyrics_txt), "-o", str(out), "--model", tiny_models["whisper"],
                "--language", "en", "--device", "cpu"]) == 0
    lines = read_lyrics(out).lines
    plain = [ln.strip() for ln in lyrics_txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert [ln.text for ln in lines] == plain  # verbatim, each once, in order
    got = [ln.start for ln in lines]
    previous = -1.0
    for k, group in enumerate(groups):  # at its first word, or one tick after the line before
        assert got[k] == pytest.approx(max(round(group[0].start, 2), previous + 0.01), abs=0.0051), (k, got)
        previous = got[k]


def test_align_with_an_already_timed_file_uses_it_as_it_is(song_wav, tmp_path, caplog):
    timed = tmp_path / "timed.csv"
    timed.write_text("timestamp,text\n00:01,hello there\n00:03,second line\n", encoding="utf-8")
    out = tmp_path / "out.lrc"
    missing_model = tmp_path / "no_model.pt"  # not needed: nothing is recognised
    with caplog.at_level("INFO"):
        assert cli(["align", str(song_wav), str(timed), "-o", str(out), "--model", str(missing_model)]) == 0
    assert [(ln.start, ln.text) for ln in read_lyrics(out).lines] == [(1.0, "hello there"), (3.0, "second line")]
    assert "already has timestamps" in caplog.text


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_model_exits_2_saying_how_to_download_it(song_wav, tmp_path, capsys):
    code = cli(["transcribe", str(song_wav), "-o", str(tmp_path / "x.lrc"), "--model", "small",
                "--checkpoints_dir", str(tmp_path)])
    assert code == 2
    assert _one_line_error(capsys) == (f"error: {tmp_path / 'whisper_small.pt'}: Whisper checkpoint not found; "
                                       "download it with: bash download_models.sh whisper_small")


def test_non_audio_song_exits_2(tiny_models, tmp_path, capsys):
    fake = tmp_path / "song.mp3"
    fake.write_text("this is not audio\n", encoding="utf-8")
    code = cli(["transcribe", str(fake), "-o", str(tmp_path / "x.lrc"), "--model", tiny_models["whisper"]])
    assert code == 2
    assert str(fake) in _one_line_error(capsys)
    assert not (tmp_path / "x.lrc").exists()


def test_empty_lyrics_text_exits_2(tiny_models, song_wav, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    code = cli(["align", str(song_wav), str(empty), "-o", str(tmp_path / "x.lrc"), "--model", tiny_models["whisper"]])
    assert code == 2
    assert _one_line_error(capsys) == f"error: {empty}: the lyrics text is empty (give one lyric line per line)"


def test_unknown_output_type_exits_2_before_any_work(song_wav, tmp_path, capsys):
    assert cli(["transcribe", str(song_wav), "-o", str(tmp_path / "x.txt")]) == 2
    assert "unknown lyric file type '.txt'" in _one_line_error(capsys)


@pytest.mark.parametrize("music, message", [
    (dict(align=True), "--align needs the lyric text: add -lyr LYRICS.txt"),
    (dict(align=True, transcribe=True, lyrics="x.txt"), "--align and --transcribe: choose one"),
    (dict(transcribe=True, lyrics="x.txt"), "--transcribe writes the lyrics from the song: drop -lyr x.txt"),
])
def test_render_flag_combinations_are_checked_before_any_model_loads(song_wav, tmp_path, music, message):
    config = Config()
    config.music.audio = str(song_wav)
    for k, v in music.items():
        setattr(config.music, k, v)
    with pytest.raises(InputError, match=message):
        lyricsync.timed_lyrics_for(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_render_hook_does_nothing_without_the_flags(tmp_path):
    config = Config()
    config.music.lyrics = "kept.csv"
    assert lyricsync.timed_lyrics_for(config, tmp_path) is None
    assert config.music.lyrics == "kept.csv"


@pytest.mark.slow
def test_generate_align_renders_with_the_aligned_lyrics(tiny_models, song_wav, sung_lyrics, tmp_path):
    sung_txt, groups = sung_lyrics
    lyrics_txt = tmp_path / "lyrics.txt"  # the sung lines, then one line that is not in the song
    lyrics_txt.write_text(sung_txt.read_text(encoding="utf-8") + "Never sung at all\n", encoding="utf-8")
    out = tmp_path / "out" / "video.mp4"
    args = ["-ap", str(song_wav), "-lyr", str(lyrics_txt), "--align", "--whisper_model", tiny_models["whisper"],
            "--whisper_language", "en", *model_flags(tiny_models), "-gid", "cpu",
            "-s", "32", "32", "-ips", "2", "-cuts", "2", "--precision", "fp32", "--fps", "10", "-sd", "3", "--no_sheets",
            "-o", str(out)]
    proc = run_main("generate.py", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    timed = out.with_name("video.run") / lyricsync.TIMED_NAME
    lines = read_lyrics(timed).lines
    assert [ln.text for ln in lines] == [" ".join(w.text.strip() for w in g) for g in groups] + ["Never sung at all"]
    assert lines[0].start == pytest.approx(groups[0][0].start, abs=0.011)
    assert lines[-2].start < lines[-1].start < SONG_SECONDS  # interpolated after the last sung line
    warning = [ln for ln in proc.stderr.splitlines() if "not found in the song" in ln]
    assert len(warning) == 1 and "'Never sung at all'" in warning[0], proc.stderr[-2000:]
    saved = Config.load(out.with_name("video.run") / "config.yaml")
    assert saved.music.lyrics == str(timed) and saved.music.align
    storyboard = (out.with_name("video.run") / "storyboard.yaml").read_text(encoding="utf-8")
    assert all(ln.text in storyboard for ln in lines)  # the render was driven by the aligned lyric lines
    assert out.is_file() and out.stat().st_size > 0


@pytest.mark.slow
def test_interpolate_transcribe_renders_text_and_audio_halves_of_the_recognised_lines(tiny_models, song_wav,
                                                                                       recognised, tmp_path):
    """generate_interpolate.py --transcribe: the lines Whisper heard drive the lyric intervals."""
    from metamusic.media.video import probe

    out = tmp_path / "interp.mp4"
    args = ["-ap", str(song_wav), "--transcribe", "--whisper_model", tiny_models["whisper"], "--whisper_language",
            "en", *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32", "-ips", "2", "-cuts", "2",
            "--precision", "fp32", "--fps", "10", "-sd", "3", "--no_sheets", "-o", str(out)]
    proc = run_main("generate_interpolate.py", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "interp.run"
    lines = read_lyrics(run / lyricsync.TIMED_NAME).lines
    assert lines and lines[0].start == pytest.approx(recognised[0].start, abs=0.011)
    board = (run / "storyboard.yaml").read_text(encoding="utf-8")
    assert all(ln.text in board for ln in lines)
    info = probe(out)
    assert info.video_frames == round(SONG_SECONDS * 10) and info.has_audio


def test_render_hook_transcribes_into_the_run_folder(tiny_models, song_wav, recognised, tmp_path):
    config = Config()
    config.music.audio, config.music.transcribe = str(song_wav), True
    config.music.whisper_model, config.music.whisper_language = tiny_models["whisper"], "en"
    path = lyricsync.timed_lyrics_for(config, tmp_path / "run")
    assert path == tmp_path / "run" / lyricsync.TIMED_NAME
    assert config.music.lyrics == str(path) and config.music.lyrics_format is None
    lines = read_lyrics(path).lines
    assert lines[0].start == pytest.approx(recognised[0].start, abs=0.011)
    assert all(ln.start < SONG_SECONDS for ln in lines)


def test_render_hook_renders_without_lyrics_when_nothing_is_recognised(song_wav, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(lyricsync, "transcribe", lambda *a, **k: ())
    config = Config()
    config.music.audio, config.music.transcribe = str(song_wav), True
    assert lyricsync.timed_lyrics_for(config, tmp_path) is None
    assert config.music.lyrics is None
    assert (tmp_path / lyricsync.TIMED_NAME).read_text(encoding="utf-8") == "[re:MetaMusic lyricsync]\n"
    assert "rendering without lyrics" in caplog.text
