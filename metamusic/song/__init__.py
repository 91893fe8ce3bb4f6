"""The song and its words: audio decoding, lyric files, and the timeline of segments."""
