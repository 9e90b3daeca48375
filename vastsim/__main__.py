"""`python -m vastsim [--port 8181] [--seed 0] …`"""

from __future__ import annotations

import argparse
import sys

from vastsim.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vastsim",
        description="A local Vast.ai marketplace with the real API's endpoints and quirks.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
