"""The `curate` entry point: registers only the command family the command line names, so a
command does not pay for building every other command (typer builds each registered command's
parameters on every run); `curate --help` and unknown names register them all."""

from __future__ import annotations

import importlib
import sys

# first word of the command line -> the family modules that define its commands
FAMILY_OF = {
    "select": ("select",),
    "resample": ("select",),
    "bids": ("influence",),
    "importance": ("importance",),
    "featurize": ("importance",),
    "score": ("score", "importance", "influence"),
    "reweight": ("score",),
    "filter": ("filter",),
    "dedup": ("dedup",),
    "train": ("train",),
    "embed": ("diversity",),
    "cluster": ("diversity",),
    "diversify": ("diversity",),
    "inspect": ("misc",),
    "run": ("misc",),
    "demo": ("misc",),
    "check": ("misc", "reports"),
    "report": ("reports",),
    "diff": ("reports",),
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    if first in FAMILY_OF and "--help" not in args[:1]:
        from curate.cli import options

        for family in FAMILY_OF[first]:
            importlib.import_module(f"curate.cli.{family}")
        options.run_app(options.app, args)
        return
    from curate.cli.app import main as full

    full(args)


if __name__ == "__main__":
    main()
