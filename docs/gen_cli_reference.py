"""Print docs/cli.md: every command's --help, generated so it never drifts from the code.

    python docs/gen_cli_reference.py > docs/cli.md
"""

from __future__ import annotations

import os
import subprocess
import sys

COMMANDS = [
    [],
    ["select"],
    ["importance", "fit"],
    ["score", "importance"],
    ["resample"],
    ["featurize"],
    ["dedup", "exact"],
    ["dedup", "minhash"],
    ["train", "fasttext"],
    ["score", "fasttext"],
    ["filter", "threshold"],
    ["score", "heuristics"],
    ["filter", "gopher"],
    ["filter", "c4"],
    ["filter", "fineweb"],
    ["score", "combine"],
    ["train", "combine"],
    ["train", "lm"],
    ["embed"],
    ["cluster"],
    ["diversify"],
    ["reweight"],
    ["score", "lm"],
    ["inspect"],
    ["run"],
    ["demo"],
]


def help_text(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    out = subprocess.run([sys.executable, "-m", "curate.cli.app", *args, "--help"], capture_output=True, text=True, env=env, check=True)
    return out.stdout.rstrip()


def main() -> None:
    print("# CLI reference\n")
    print("Generated from `--help` by `docs/gen_cli_reference.py` (`make docs`); do not edit by hand.\n")
    for args in COMMANDS:
        title = " ".join(["curate", *args])
        print(f"## `{title}`\n")
        print("```text")
        print(help_text(args).replace("python -m curate.cli.app", "curate"))
        print("```\n")


if __name__ == "__main__":
    main()
