"""Executors schedule shard functions; they never look inside a shard."""
