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

# `score` spans three families; a named subcommand needs only its own (`curate score --help`
# and an unknown subcommand still get all three)
SUBFAMILY_OF: dict[tuple[str, ...], tuple[str, ...]] = {
    ("score", "importance"): ("importance",),
    ("score", "influence"): ("influence",),
    **{("score", name): ("score",) for name in ("heuristics", "fasttext", "lm", "combine")},
}


def families(args: list[str]) -> tuple[str, ...] | None:
    """The family modules the command line needs, or None for all of them."""
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] not in FAMILY_OF or "--help" in args[:1]:
        return None
    return SUBFAMILY_OF.get(tuple(words[:2]), FAMILY_OF[words[0]])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    needed = families(args)
    if needed is not None:
        from curate.cli import options

        for family in needed:
            importlib.import_module(f"curate.cli.{family}")
        options.run_app(options.app, args)
        return
    from curate.cli.app import main as full

    full(args)


if __name__ == "__main__":
    main()
