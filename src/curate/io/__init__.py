"""Reading and writing datasets: Parquet and JSONL shards, Arrow IPC streams, atomic outputs."""
