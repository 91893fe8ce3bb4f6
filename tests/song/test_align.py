"""Lyric-text alignment and phrase splitting on constructed recognised words (no model)."""

from __future__ import annotations

import pytest

from metamusic.song.align import Word, align_lines, align_tokens, phrases, tokens


def sung(*lines_with_times: tuple[str, float], gap: float = 0.4) -> list[Word]:
    """Words of each (text, start) as Whisper gives them: leading spaces, one word per `gap` s."""
    out = []
    for text, start in lines_with_times:
        for i, w in enumerate(text.split()):
            out.append(Word(" " + w, start + i * gap, start + i * gap + 0.3))
    return out


def starts(result) -> list[float]:
    return [ln.start for ln in result.lines]


def check_invariants(result, lines, duration=None):
    assert [ln.text for ln in result.lines] == list(lines)  # every line, once, verbatim, in order
    times = starts(result)
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), times
    assert all(ln.end is not None and ln.end > ln.start for ln in result.lines)
    if duration is not None:
        assert all(0 <= t < duration for t in times)


def test_tokens_fold_case_accents_apostrophes_and_punctuation():
    assert tokens("Don't STOP, Café-au-lait!") == ["dont", "stop", "cafe", "au", "lait"]
    assert tokens(" ...") == []


def test_exact_words_place_each_line_at_its_first_word():
    lines = ["Rain on the window", "Light in the hall", "We sing along"]
    words = sung(("rain on the window", 2.0), ("light in the hall", 6.5), ("we sing along", 11.0))
    result = align_lines(words, lines, duration=20.0)
    assert starts(result) == [2.0, 6.5, 11.0]
    assert result.lines[0].end == pytest.approx(2.0 + 3 * 0.4 + 0.3)
    assert result.unplaced == ()
    check_invariants(result, lines, 20.0)


def test_substitutions_deletions_and_insertions_are_tolerated():
    lines = ["The river runs to the sea", "Under a silver moon tonight", "Hold me close"]
    words = sung(
        ("uh yeah", 0.5),  # intro ad-lib: inserted words before the text
        ("the rivers run to sea", 3.0),  # "rivers"/"run" misheard, "the" before "sea" missing
        ("under a silver oh oh moon tonight", 8.0),  # extra words in the middle
        ("hold me", 14.0),  # "close" not heard
        ("thank you", 18.0),  # outro chatter after the last line
    )
    result = align_lines(words, lines, duration=20.0)
    assert starts(result) == [3.0, 8.0, 14.0]
    assert result.unplaced == ()
    check_invariants(result, lines, 20.0)


def test_repeated_chorus_lines_take_their_own_occurrence_in_order():
    chorus = "oh we are the ones"
    lines = [chorus, "walking through the night", chorus, "never looking back", chorus]
    words = sung((chorus, 1.0), ("walking through the night", 4.0), (chorus, 7.0),
                 ("never looking back", 10.0), (chorus, 13.0))
    result = align_lines(words, lines, duration=16.0)
    assert starts(result) == [1.0, 4.0, 7.0, 10.0, 13.0]
    check_invariants(result, lines, 16.0)


def test_chorus_sung_more_often_than_written_keeps_each_line_once():
    chorus = "oh we are the ones"
    lines = [chorus, "walking through the night"]
    words = sung((chorus, 1.0), (chorus, 4.0), ("walking through the night", 7.0))
    result = align_lines(words, lines, duration=10.0)
    # the chorus line is the occurrence right before the verse (either would be in order)
    assert result.lines[1].start == 7.0 and result.lines[0].start in (1.0, 4.0)
    check_invariants(result, lines, 10.0)


def test_a_line_that_appears_nowhere_is_interpolated_between_its_neighbours():
    lines = ["first line here", "completely absent words", "third line there", "fourth and final"]
    words = sung(("first line here", 2.0), ("third line there", 8.0), ("fourth and final", 12.0))
    result = align_lines(words, lines, duration=15.0)
    assert result.unplaced == (1,)
    first_end = result.lines[0].end
    assert first_end < result.lines[1].start < 8.0
    assert result.lines[1].start == pytest.approx((first_end + 8.0) / 2, abs=0.01)
    assert starts(result)[2:] == [8.0, 12.0]
    check_invariants(result, lines, 15.0)


def test_unplaced_lines_at_the_ends_stay_inside_the_song():
    lines = ["nobody sang this", "the middle line", "nor this one", "nor that"]
    words = sung(("the middle line", 5.0))
    result = align_lines(words, lines, duration=10.0)
    assert result.unplaced == (0, 2, 3)
    assert result.lines[1].start == 5.0
    assert 0 <= result.lines[0].start < 5.0
    check_invariants(result, lines, 10.0)


def test_nothing_recognised_spreads_the_lines_over_the_song():
    lines = ["a", "b", "c"]
    result = align_lines([], lines, duration=9.0)
    assert result.unplaced == (0, 1, 2)
    check_invariants(result, lines, 9.0)


def test_words_at_the_same_instant_still_give_increasing_times():
    lines = ["one", "two", "three"]
    words = [Word(" one", 3.0, 3.0), Word(" two", 3.0, 3.0), Word(" three", 3.0, 3.1)]
    result = align_lines(words, lines, duration=5.0)
    assert starts(result) == [3.0, 3.01, 3.02]
    check_invariants(result, lines, 5.0)


def test_align_tokens_reports_unmatched_given_words_as_none():
    assert align_tokens(["a", "b", "c"], ["x", "a", "c", "y"]) == [1, None, 2]
    assert align_tokens(["hello"], []) == [None]


def test_phrases_break_at_pauses_sentence_ends_and_length():
    words = [Word(" We", 0.0, 0.3), Word(" sail", 0.4, 0.7), Word(" away.", 0.8, 1.0),
             Word(" Into", 1.1, 1.3), Word(" the", 1.4, 1.5), Word(" blue", 3.0, 3.4),
             Word(" " + "x" * 50, 3.5, 3.9)]
    lines = phrases(words, duration=5.0)
    assert [ln.text for ln in lines] == ["We sail away.", "Into the", "blue", "x" * 50]
    assert [ln.start for ln in lines] == [0.0, 1.1, 3.0, 3.5]
    assert lines[0].end == 1.0 and lines[-1].end == 3.9


def test_phrases_drop_words_after_the_song_and_blank_words():
    words = [Word(" ", 0.0, 0.1), Word(" hi", 1.0, 1.2), Word(" late", 9.0, 9.5)]
    assert [ln.text for ln in phrases(words, duration=5.0)] == ["hi"]
    assert phrases([], duration=5.0) == ()
