"""The ``vtdwalk`` command. Subcommands register themselves in ``build_parser``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vtdwalk import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtdwalk", description="Intel VT-d DMA remapping simulator")
    p.add_argument("--version", action="version", version=f"vtdwalk {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_dmar(sub)
    _add_platform(sub)
    return p


def _add_dmar(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "dmar",
        help="decode and check an ACPI DMAR table",
        description="Decode an ACPI DMAR table (FILE, or the running machine's) and list its "
        "problems.",
    )
    d.add_argument("file", nargs="?", metavar="FILE", help="binary table (default: the host's)")
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.add_argument(
        "--lenient",
        action="store_true",
        help="decode what can be decoded and report structural faults as problems",
    )
    d.set_defaults(func=_cmd_dmar)


def _cmd_dmar(args: argparse.Namespace) -> int:
    import json

    from vtdwalk import dmar
    from vtdwalk.errors import DmarError

    strict = not args.lenient
    try:
        if args.file is None:
            table = dmar.read_host(strict=strict)
        else:
            try:
                with open(args.file, "rb") as f:
                    data = f.read()
            except OSError as e:
                print(f"vtdwalk dmar: cannot read {args.file}: {e.strerror or e}", file=sys.stderr)
                return 1
            table = dmar.parse(data, strict=strict)
        out = json.dumps(table.to_dict(), indent=2) if args.json else dmar.format_table(table)
    except DmarError as e:
        print(f"vtdwalk dmar: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _add_platform(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "platform",
        help="build a machine from a DMAR table and show its remapping units",
        description="Build the platform a DMAR table describes (FILE, or the embedded two-socket "
        "machine) the way Xen does, and print its units, nodes and findings.",
    )
    d.add_argument("file", nargs="?", metavar="FILE", help="binary DMAR table")
    d.add_argument("--topology", metavar="DESC", help="TOML/JSON machine description")
    d.add_argument("--policy", choices=("seed", "pre-seed"), default="seed")
    d.add_argument("--strict", action="store_true", help="refuse what Xen refuses")
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.set_defaults(func=_cmd_platform)


def _cmd_platform(args: argparse.Namespace) -> int:
    import json

    from vtdwalk.errors import VtdError
    from vtdwalk.platform import Platform

    try:
        if args.file is None:
            kw = {"topology": args.topology} if args.topology else {}
            p = Platform.default(policy=args.policy, strict=args.strict, **kw)
        else:
            p = Platform.from_dmar(
                args.file, topology=args.topology, policy=args.policy, strict=args.strict
            )
    except VtdError as e:
        print(f"vtdwalk platform: {e}", file=sys.stderr)
        return 1
    print(json.dumps(p.to_dict(), indent=2) if args.json else p.format())
    return 0


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
