"""Print docs/cli.md: every command's --help, generated so it never drifts from the code.

    python docs/gen_cli_reference.py > docs/cli.md
"""

from __future__ import annotations

import os
import subprocess
import sys

def commands() -> list[list[str]]:
    """Every command of the app, in `--help` order: the root, then each group and its commands."""
    import typer

    from curate.cli.app import app

    out: list[list[str]] = [[]]

    def walk(cmd: object, path: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            if hasattr(sub, "commands"):
                walk(sub, [*path, name])
            else:
                out.append([*path, name])

    walk(typer.main.get_command(app), [])
    return out

def help_text(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    out = subprocess.run([sys.executable, "-m", "curate.cli.app", *args, "--help"], capture_output=True, text=True, env=env, check=True)
    return out.stdout.rstrip()


def main() -> None:
    print("# CLI reference\n")
    print("Generated from `--help` by `docs/gen_cli_reference.py` (`make docs`); do not edit by hand.\n")
    for args in commands():
        title = " ".join(["curate", *args])
        print(f"## `{title}`\n")
        print("```text")
        print(help_text(args).replace("python -m curate.cli.app", "curate"))
        print("```\n")


if __name__ == "__main__":
    main()
