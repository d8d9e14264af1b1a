"""`curate`: select pretraining data toward a target, and the stages it is made of.

Data goes to files or stdout (Arrow IPC with `-`); reports, progress and errors go to stderr.
Each command family lives in its own module; importing them registers their commands.
"""

from __future__ import annotations

import importlib
import sys

from curate.cli import render
from curate.cli.options import app
from curate.errors import CurateError

# Importing a family registers its commands; this order is the order of `curate --help`.
FAMILIES = ("select", "importance", "score", "filter", "dedup", "train", "diversity", "misc")
for _family in FAMILIES:
    importlib.import_module(f"curate.cli.{_family}")

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print `error:`/`hint:` and exit 1, never a traceback; usage errors exit 2."""
    try:
        app(args=argv, standalone_mode=True)
    except CurateError as exc:
        render.error(exc.message, exc.hint)
        sys.exit(1)
    except KeyboardInterrupt:
        render.error("interrupted", "rerun the same command to resume")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:  # e.g. a full disk or a permission problem while writing
        where = f"{exc.filename}: " if exc.filename else ""
        render.error(f"{where}{exc.strerror or exc}", "check the path, its permissions and free space")
        sys.exit(1)


if __name__ == "__main__":
    main()
