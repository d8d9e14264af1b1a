"""The stats JSON's header (placeholder; documented schema follows)."""

from curate import __version__

SCHEMA = "curate.stats/1"
STATS_HEADER = {"schema": SCHEMA, "curate_version": __version__}
