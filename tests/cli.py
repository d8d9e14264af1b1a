"""Running the CLI in the test process: the exit status, as a shell would see it."""

from __future__ import annotations

from curate.cli.app import main


def run_main(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
