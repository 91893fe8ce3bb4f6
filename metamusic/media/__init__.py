"""Everything written for people to watch: videos, captions, stitching and contact sheets."""
