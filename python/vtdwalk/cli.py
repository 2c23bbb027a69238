"""The ``vtdwalk`` command: ``simulate``, ``dump``, ``dmar`` and ``platform``.

Exit status, the same for every subcommand:

* 0: done, and the input has no finding of severity ``fatal`` or ``error``;
* 1: the input has such findings (the output is still printed), or cannot be used (a file
  that cannot be read or parsed, a table without a usable unit, no such domain or device);
* 2: usage: an unknown option, a bad number, an output path that cannot be written;
* 130: interrupted (Ctrl-C).

Severities come from the one table of :mod:`vtdwalk.acpi.severity`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtdwalk import __version__
from vtdwalk.acpi.severity import EXIT_ERROR_SEVERITIES
from vtdwalk.errors import InvalidArgument, VtdError

if TYPE_CHECKING:
    from vtdwalk.platform import Platform
    from vtdwalk.sim import SimConfig

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: What ``host`` means wherever a DMAR table is named: the running machine's table.
HOST = "host"

_MAX_COUNT = 1 << 62
_SCI = re.compile(r"^[0-9][0-9_]*(\.[0-9_]*)?[eE]\+?[0-9]+$")


class UsageError(VtdError):
    """A command-line argument that cannot be used: exit 2, the option named."""


def integer(minimum: int, maximum: int = _MAX_COUNT) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[minimum, maximum]``, written as ``1048576``,
    ``1_048_576`` or ``1e6`` (an exact integer in scientific notation)."""

    def parse(text: str) -> int:
        t = text.strip()
        value: int | None = None
        try:
            value = int(t, 10)
        except ValueError:
            if _SCI.match(t):
                try:
                    d = Decimal(t.replace("_", ""))
                except InvalidOperation:
                    d = Decimal("NaN")
                if d.is_finite() and d == d.to_integral_value():
                    value = int(d)
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (e.g. 1000000, 1e6)")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{text} is above {maximum}")
        return value

    parse.__name__ = "integer"
    return parse


_BDF = re.compile(
    r"^(?:(?P<seg>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})"
    r"\.(?P<fn>[0-9a-fA-F])$"
)


def device_arg(text: str) -> str:
    """An argparse ``type`` for a device: ``[segment:]bus:device.function`` in hex, device at
    most 0x1f and function at most 7."""
    m = _BDF.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a PCI device: [segment:]bus:device.function in hex, e.g. 81:00.0"
        )
    if int(m["dev"], 16) > 0x1F:
        raise argparse.ArgumentTypeError(
            f"{text}: device number {m['dev']} (hex) is above 1f (0x1f is the last device)"
        )
    if int(m["fn"], 16) > 7:
        raise argparse.ArgumentTypeError(f"{text}: function {m['fn']} is above 7")
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vtdwalk`` command and its subcommands."""
    p = argparse.ArgumentParser(
        prog="vtdwalk",
        description="Intel VT-d DMA remapping simulator",
        epilog="exit status: 0 ok, 1 errors found in the input, 2 usage, 130 interrupted",
    )
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
    d.add_argument(
        "--policy",
        choices=("seed", "pre-seed"),
        default="seed",
        help="where the driver puts table pages: 'seed' (with Xen's NUMA seed series, the "
        "default) or 'pre-seed' (before it)",
    )
    d.add_argument(
        "--random-seed",
        "--seed",
        dest="seed",
        type=integer(0),
        default=1,
        metavar="N",
        help="seed of the random generator for device choice, buffers and workload (default 1; "
        "--seed is an alias)",
    )


def _workload_options(d: argparse.ArgumentParser) -> None:
    d.add_argument(
        "--iotlb-entries",
        type=integer(0),
        default=1024,
        metavar="N",
        help="IOTLB entries of each remapping unit (default 1024; 0: no IOTLB)",
    )
    d.add_argument(
        "--accesses",
        type=integer(1),
        default=1 << 20,
        metavar="N",
        help="DMA requests to translate, e.g. 1e6 or 1_000_000 (default 1048576); generated "
        "in chunks, so memory does not grow with N",
    )


def _read_table(name: str, arg: str, what: str = "DMAR table") -> bytes:
    """The bytes of a named table: a file, or 'host' (this machine's). ``arg`` is the option
    or argument that named it. Like every file the library reads, it must be a regular file of
    at most ``DMAR_CAP`` bytes (a device, a FIFO or a directory is refused before any read)."""
    from vtdwalk._args import DMAR_CAP, read_regular_file
    from vtdwalk.acpi import dmar

    if name == HOST:
        try:
            return read_regular_file(dmar.HOST_TABLE_PATH, arg, DMAR_CAP)
        except OSError as e:
            raise VtdError(
                f"cannot read this machine's {what} {dmar.HOST_TABLE_PATH}: {e.strerror or e}"
            ) from e
    try:
        return read_regular_file(name, arg, DMAR_CAP)
    except OSError as e:
        raise VtdError(f"cannot read {name}: {e.strerror or e}") from e


def _sim_config(args: argparse.Namespace, workload: bool = True) -> SimConfig:
    from vtdwalk.sim import DEFAULT_DMAR, SimConfig

    cfg = SimConfig(policy=args.policy, seed=args.seed)
    if workload:
        cfg.iotlb_entries = args.iotlb_entries
        cfg.accesses = args.accesses
    if args.dmar is not None:
        cfg.dmar = _read_table(args.dmar, "--dmar")
        cfg.dmar_name = HOST if args.dmar == HOST else Path(args.dmar).name
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
        epilog="exit status: 0 ok, 1 errors found in the input (the report is still printed), "
        "2 usage, 130 interrupted",
    )
    _platform_options(d)
    _workload_options(d)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument(
        "--plot",
        metavar="FILE",
        help="also run the IOTLB-size sweep and draw a figure to FILE (format from the suffix: "
        "png, pdf, svg, ...; none: .png); needs matplotlib",
    )
    d.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show each phase's progress on stderr (default: when stderr is a terminal)",
    )
    d.set_defaults(func=_cmd_simulate)


def _input_errors(findings: Sequence[Any]) -> list[Any]:
    return [f for f in findings if f.severity in EXIT_ERROR_SEVERITIES]


def _cmd_simulate(args: argparse.Namespace) -> int:
    import json

    from vtdwalk import sim

    plot_path = None
    if args.plot:
        try:
            plot_path = sim.check_plot_path(args.plot)
        except InvalidArgument as e:
            raise UsageError(f"--plot: {e}") from e
    cfg = _sim_config(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    with sim.Phases(progress) as phases:
        report = sim.run(cfg, phases)
        if plot_path is not None:
            report["iotlb_sweep"] = sim.hit_rate_sweep(cfg, phases=phases)
    if plot_path is not None:
        written = sim.plot(report, plot_path)
        report["plot"] = str(written)
    errors = [f for f in report["platform"]["findings"] if f["severity"] in EXIT_ERROR_SEVERITIES]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(sim.render_text(report))
        if plot_path is not None:
            print(f"\nplot written to {report['plot']}")
    if errors:
        codes = ", ".join(sorted({f"{f['severity']}: {f['code']}" for f in errors}))
        print(
            f"vtdwalk simulate: the table has findings Xen refuses or that are errors ({codes}); "
            "what remains was simulated",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    return EXIT_OK


def _add_dump(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "dump",
        help="show the tables of a domain or device of the simulated machine",
        description="Build the same machine and domains as 'vtdwalk simulate' (same table, "
        "topology, policy and random seed) and print a domain's context entries and mappings "
        "as ranges with page sizes and permissions.",
    )
    who = d.add_mutually_exclusive_group(required=True)
    who.add_argument("--domain", type=integer(0), metavar="N", help="domain id")
    who.add_argument(
        "--device", type=device_arg, metavar="BDF", help="a device, e.g. 81:00.0: its domain's"
    )
    _platform_options(d)
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.add_argument("--all", action="store_true", help="list every range (text mode)")
    d.set_defaults(func=_cmd_dump)


def _cmd_dump(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from vtdwalk import sim
    from vtdwalk.topology import Bdf

    cfg = _sim_config(args, workload=False)
    p = sim.build_platform(cfg)
    sim.plan_scenario(p, cfg, np.random.default_rng(cfg.seed))
    if args.domain is not None:
        dom = p.assignments.domains.get(args.domain)
        if dom is None:
            known = ", ".join(str(i) for i in sorted(p.assignments.domains)) or "none"
            raise VtdError(f"no domain {args.domain} (domains: {known})")
    else:
        bdf = Bdf.coerce(args.device)
        segments = sorted({u.segment for u in p.iommus} | {d.bdf.segment for d in p.topology})
        if bdf.segment not in segments:
            have = ", ".join(f"{s:04x}" for s in segments) or "none"
            raise VtdError(
                f"device {args.device}: no PCI segment {bdf.segment:04x} on this machine "
                f"(segments: {have})"
            )
        dom = p.owner_of(bdf)
        if dom is None:
            raise VtdError(f"device {bdf} is in no domain")
    out = sim.dump(p, dom)
    print(
        json.dumps(out, indent=2) if args.json else sim.render_dump(out, None if args.all else 40)
    )
    return EXIT_OK


def _add_dmar(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "dmar",
        help="decode and check an ACPI DMAR table",
        description="Decode an ACPI DMAR table and list its problems. FILE is a binary table, "
        "or 'host' for this machine's; without FILE, this machine's.",
        epilog="exit status: 0 ok, 1 the table has problems of severity error or fatal (still "
        "printed) or cannot be read, 2 usage",
    )
    d.add_argument(
        "file", nargs="?", metavar="FILE", help="binary table, or 'host' (default: host)"
    )
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.add_argument(
        "--lenient",
        action="store_true",
        help="decode what can be decoded and report structural faults as problems "
        "(default: stop at the first)",
    )
    d.set_defaults(func=_cmd_dmar)


def _cmd_dmar(args: argparse.Namespace) -> int:
    import json

    from vtdwalk.acpi import dmar

    table = dmar.parse(_read_table(args.file or HOST, "FILE"), strict=not args.lenient)
    problems = table.validate()
    text = None if args.json else fit(dmar.format_table(table, problems))
    print(json.dumps(table.to_dict(), indent=2) if text is None else text)
    return EXIT_FINDINGS if _input_errors(problems) else EXIT_OK


def _add_platform(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "platform",
        help="build a machine from a DMAR table and show its remapping units",
        description="Build the platform a DMAR table describes the way Xen does, and print its "
        "units, nodes, RMRRs, ATSRs and findings. FILE is a binary table, or 'host' for this "
        "machine's; without FILE, the embedded two-socket machine (as 'vtdwalk simulate').",
        epilog="exit status: 0 ok, 1 findings of severity error or fatal (still printed) or an "
        "unusable table, 2 usage",
    )
    d.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="binary DMAR table, or 'host' (default: the embedded table)",
    )
    d.add_argument("--topology", metavar="FILE", help="TOML/JSON PCI and NUMA description")
    d.add_argument(
        "--policy",
        choices=("seed", "pre-seed"),
        default="seed",
        help="root table placement: with Xen's NUMA seed series (default) or before it",
    )
    d.add_argument(
        "--strict",
        action="store_true",
        help="refuse what Xen refuses (exit 1 on a fatal finding, printing nothing else)",
    )
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.set_defaults(func=_cmd_platform)


def fit(text: str, width: int = 100) -> str:
    """``text`` with each line longer than ``width`` wrapped under its own indentation (plus
    four), and no trailing spaces."""
    import textwrap

    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        out.extend(
            textwrap.wrap(
                line.strip(),
                width,
                initial_indent=lead,
                subsequent_indent=lead + "    ",
                break_on_hyphens=False,
            )
        )
    return "\n".join(out)


def format_platform(d: dict[str, Any], width: int = 100) -> str:
    """``Platform.to_dict()`` for people: tables within ``width`` columns."""
    from vtdwalk.sim.report import render_table

    def node(n: int | None) -> str:
        return "-" if n is None else str(n)

    def count(n: int, what: str) -> str:
        return f"{n} {what}" + ("" if n == 1 else "s")

    out = [
        f"platform: {count(len(d['units']), 'remapping unit')}, "
        f"{count(d['pci_functions'], 'PCI function')}, {count(len(d['numa']), 'NUMA node')}, "
        f"policy {d['policy']}, topology "
        + ("synthesised" if d["synthesised_topology"] else "given"),
        "",
        "NUMA nodes:",
    ]
    out += render_table(
        ["", "memory", "proximity domains"],
        [
            [
                f"node {i}",
                f"[{n['base']:#x}, {n['base'] + n['size']:#x})",
                ", ".join(map(str, n["pxms"])),
            ]
            for i, n in enumerate(d["numa"])
        ],
        width=width - 2,
    )
    out += ["", "remapping units (Xen list order):"]
    out += render_table(
        ["#", "unit", "seg", "scope", "levels", "DIDs", "node", "root table", "its node"],
        [
            [
                u["index"],
                f"{u['address']:#x}",
                f"{u['segment']:04x}",
                "include-all" if u["include_all"] else f"{len(u['scope'])} entries",
                u["levels"],
                u["ndoms"],
                node(u["node"]),
                f"{u['root_table']:#x}",
                node(u["root_table_node"]),
            ]
            for u in d["units"]
        ],
        width=width - 2,
    )
    if d["rmrrs"]:
        out += ["", "RMRRs:"]
        out += render_table(
            ["range", "seg", "devices"],
            [
                [f"[{r['base']:#x}, {r['end']:#x}]", f"{r['segment']:04x}", ", ".join(r["devices"])]
                for r in d["rmrrs"]
            ],
            width=width - 2,
        )
    if d["atsrs"]:
        out += ["", "ATSRs:"]
        out += render_table(
            ["seg", "scope"],
            [
                [
                    f"{a['segment']:04x}",
                    "all ports"
                    if a["all_ports"]
                    else "buses " + (", ".join(f"{b:02x}" for b in a["buses"]) or "none"),
                ]
                for a in d["atsrs"]
            ],
            width=width - 2,
        )
    out += ["", f"findings: {len(d['findings'])}"]
    if d["findings"]:
        out += render_table(
            ["severity", "code", "at", "message"],
            [
                [
                    f["severity"],
                    f["code"],
                    "" if f["offset"] is None else f"{f['offset']:#x}",
                    f["message"],
                ]
                for f in d["findings"]
            ],
            width=width - 2,
        )
    return "\n".join(out)


def _cmd_platform(args: argparse.Namespace) -> int:
    import json

    from vtdwalk.platform import Platform

    p: Platform
    if args.file is None:
        kw = {"topology": args.topology} if args.topology else {}
        p = Platform.default(policy=args.policy, strict=args.strict, **kw)
    else:
        p = Platform.from_dmar(
            _read_table(args.file, "FILE"),
            topology=args.topology,
            policy=args.policy,
            strict=args.strict,
        )
    d = p.to_dict()
    print(json.dumps(d, indent=2) if args.json else format_platform(d))
    return EXIT_FINDINGS if _input_errors(p.report) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return EXIT_USAGE
        try:
            rc: int = func(args)
        except UsageError as e:
            print(f"vtdwalk {args.command}: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except VtdError as e:
            print(f"vtdwalk {args.command}: {e}", file=sys.stderr)
            return EXIT_FINDINGS
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("vtdwalk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours; silence the flush at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return rc


if __name__ == "__main__":
    sys.exit(main())
