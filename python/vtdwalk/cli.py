"""The ``vtdwalk`` command. Subcommands register themselves in ``build_parser``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vtdwalk import __version__
from vtdwalk.errors import VtdError

if TYPE_CHECKING:
    from vtdwalk.sim import SimConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtdwalk", description="Intel VT-d DMA remapping simulator")
    p.add_argument("--version", action="version", version=f"vtdwalk {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_simulate(sub)
    _add_dump(sub)
    _add_dmar(sub)
    _add_platform(sub)
    return p


def _platform_options(d: argparse.ArgumentParser) -> None:
    d.add_argument(
        "--dmar",
        metavar="FILE",
        help="binary DMAR table, or 'host' for this machine's (default: the embedded "
        "two-socket Supermicro X10DAi)",
    )
    d.add_argument(
        "--topology",
        metavar="FILE",
        help="TOML/JSON PCI and NUMA description (default: the embedded one with the default "
        "table, else synthesised from the table)",
    )
    d.add_argument("--policy", choices=("seed", "pre-seed"), default="seed")
    d.add_argument("--iotlb-entries", type=int, default=1024, metavar="N")
    d.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    d.add_argument(
        "--accesses",
        type=int,
        default=1 << 20,
        metavar="N",
        help="DMA requests to translate (default 1048576)",
    )


def _sim_config(args: argparse.Namespace) -> SimConfig:
    from pathlib import Path

    from vtdwalk.acpi import dmar
    from vtdwalk.sim import DEFAULT_DMAR, SimConfig

    cfg = SimConfig(
        policy=args.policy,
        iotlb_entries=args.iotlb_entries,
        seed=args.seed,
        accesses=args.accesses,
    )
    if args.iotlb_entries < 0 or args.accesses < 1:
        raise VtdError("--iotlb-entries must be >= 0 and --accesses >= 1")
    if args.dmar == "host":
        cfg.dmar = dmar.read_host().to_bytes()
        cfg.dmar_name = "host"
    elif args.dmar is not None:
        try:
            cfg.dmar = Path(args.dmar).read_bytes()
        except OSError as e:
            raise VtdError(f"cannot read {args.dmar}: {e.strerror or e}") from e
        cfg.dmar_name = Path(args.dmar).name
    else:
        cfg.dmar_name = DEFAULT_DMAR
    if args.topology is not None:
        cfg.topology = Path(args.topology)
    return cfg


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "simulate",
        help="run a whole machine doing DMA and report (the main job)",
        description="Build a platform, create domains, assign devices of every socket, map DMA "
        "buffers, drive a DMA workload through the remapping hardware and report throughput, "
        "IOTLB hit rate, faults and NUMA placement under both policies.",
    )
    _platform_options(d)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--plot", metavar="FILE.png", help="draw hit rate vs IOTLB size and placement")
    d.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    d.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    import json

    from vtdwalk import sim

    try:
        cfg = _sim_config(args)
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        report = sim.run(cfg, progress=progress)
        if args.plot:
            report["iotlb_sweep"] = sim.hit_rate_sweep(cfg)
            sim.plot(report, args.plot)
    except VtdError as e:
        print(f"vtdwalk simulate: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(sim.render_text(report))
        if args.plot:
            print(f"\nplot written to {args.plot}")
    return 0


def _add_dump(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "dump",
        help="show the tables of a domain or device of the simulated machine",
        description="Build the same machine and domains as 'vtdwalk simulate' (same options) and "
        "print a domain's context entries and mappings as ranges with page sizes and "
        "permissions.",
    )
    who = d.add_mutually_exclusive_group(required=True)
    who.add_argument("--domain", type=int, metavar="N", help="domain id")
    who.add_argument("--device", metavar="BDF", help="a device, e.g. 81:00.0: its domain's tables")
    _platform_options(d)
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.add_argument("--all", action="store_true", help="list every range (text mode)")
    d.set_defaults(func=_cmd_dump)


def _cmd_dump(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from vtdwalk import sim

    try:
        cfg = _sim_config(args)
        p = sim.build_platform(cfg)
        sim.plan_scenario(p, cfg, np.random.default_rng(cfg.seed))
        if args.domain is not None:
            dom = p.assignments.domains.get(args.domain)
            if dom is None:
                known = ", ".join(str(i) for i in sorted(p.assignments.domains)) or "none"
                raise VtdError(f"no domain {args.domain} (domains: {known})")
        else:
            dom = p.owner_of(args.device)
            if dom is None:
                raise VtdError(f"device {args.device} is in no domain")
        out = sim.dump(p, dom)
    except VtdError as e:
        print(f"vtdwalk dump: {e}", file=sys.stderr)
        return 1
    text = sim.render_dump(out, limit=None if args.all else 40)
    print(json.dumps(out, indent=2) if args.json else text)
    return 0


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

    from vtdwalk.acpi import dmar
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
    try:
        rc: int = func(args)
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours; silence the flush at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
