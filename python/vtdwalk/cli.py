"""The ``vtdwalk`` command. Subcommands register themselves in ``build_parser``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vtdwalk import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtdwalk", description="Intel VT-d DMA remapping simulator")
    p.add_argument("--version", action="version", version=f"vtdwalk {__version__}")
    p.add_subparsers(dest="command", metavar="COMMAND")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    rc: int = func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
