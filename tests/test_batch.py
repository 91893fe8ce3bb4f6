"""metamusic.batch: manifest rows -> render command lines; bad rows keep a one-line error."""

from __future__ import annotations

import pytest

from metamusic.batch import read_manifest, row_to_song, summary_table
from metamusic.errors import InputError


def test_csv_rows_become_flags_and_bad_rows_say_why(tmp_path):
    manifest = tmp_path / "songs.csv"
    manifest.write_text("audio,lyrics,output,theme,keyframes,size\n"
                        "a.wav,a.lrc,out/a.mp4,oil painting,true,64 64\n"
                        "b.wav,,out/b.mp4,,false,\n"
                        ",,out/c.mp4,,,\n", encoding="utf-8")
    (tmp_path / "odd.csv").write_text("audio,output,gid,colour\na.wav,a.mp4,cpu,red\n", encoding="utf-8")
    songs = [row_to_song(i, row) for i, row in enumerate(read_manifest(manifest))]
    assert songs[0].argv == ["--audio_prompt", "a.wav", "--lyrics", "a.lrc", "--output", "out/a.mp4",
                             "--theme", "oil painting", "--keyframes", "--size", "64", "64"]
    assert songs[1].argv == ["--audio_prompt", "b.wav", "--output", "out/b.mp4"] and songs[1].error is None
    assert songs[2].error == "row 3: needs both 'audio' and 'output'"
    odd = row_to_song(0, read_manifest(tmp_path / "odd.csv")[0])
    assert odd.error == "row 1: unknown column 'colour' (not a flag)"
    odd = row_to_song(0, {"audio": "a.wav", "output": "a.mp4", "gid": "cpu"})
    assert odd.argv[-2:] == ["--gpu_id", "cpu"]
    songs[0].status = "done"
    assert summary_table(songs).splitlines()[0].split() == ["song", "status", "seconds", "output"]


def test_yaml_manifest_and_an_unreadable_one(tmp_path):
    manifest = tmp_path / "songs.yaml"
    manifest.write_text("songs:\n  - {audio: a.wav, output: a.mp4, script: interpolate, keyframe_steps: 5}\n")
    song = row_to_song(0, read_manifest(manifest)[0])
    assert song.script == "interpolate" and song.argv[-2:] == ["--keyframe_steps", "5"]
    (tmp_path / "bad.yaml").write_text("just a string\n")
    with pytest.raises(InputError, match="bad.yaml: expected a list of songs"):
        read_manifest(tmp_path / "bad.yaml")
