"""The recsys example: a home-feed ranker trained from synthetic logs, stage by stage (see README.md)."""
