"""`curate`: select pretraining data toward a target, and the stages it is made of.

Data goes to files or stdout (Arrow IPC with `-`); reports, progress and errors go to stderr.
Each command family lives in its own module; importing them registers their commands.
"""

from __future__ import annotations

import importlib

from curate.cli.options import app, run_app

# Importing a family registers its commands; this order is the order of `curate --help`.
FAMILIES = (
    "select",
    "influence",
    "importance",
    "score",
    "filter",
    "dedup",
    "train",
    "diversity",
    "misc",
    "reports",
)
for _family in FAMILIES:
    importlib.import_module(f"curate.cli.{_family}")

__all__ = ["app", "main", "run_app"]


def main(argv: list[str] | None = None) -> None:
    """Entry point with every command registered (`python -m curate.cli.app`, tests, docs)."""
    run_app(app, argv)


if __name__ == "__main__":
    main()
