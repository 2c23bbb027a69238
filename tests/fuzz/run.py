"""Run the fuzz targets of targets.py with atheris (coverage-guided, libFuzzer).

    python tests/fuzz/run.py                    # every target, 20 s each
    python tests/fuzz/run.py dmar walk --seconds 300
    python tests/fuzz/run.py dmar --replay crash-1234   # re-run one input, no fuzzing

Each target runs in its own process (libFuzzer exits when its time is up). The working corpus
of a target is .fuzz/corpus/<target> (kept between runs); the DMAR target is also seeded with
the real tables of tests/data/dmar-corpus. Crashing
inputs are written to .fuzz/artifacts/. The summary gives, per target, the executions, the
coverage (libFuzzer's cov: edges and ft: features of the Python code atheris instruments) and
whether it crashed; the exit status is 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAMES = ["dmar", "walk", "pagetable", "regs", "qi"]
STATS = re.compile(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+)")


def seed_dirs(target: str) -> list[Path]:
    if target != "dmar":
        return []
    sys.path.insert(0, str(HERE.parent))
    import strategies

    d = strategies.corpus_dir()
    return [d]


def child(target: str, argv: list[str]) -> None:
    """Inside the fuzzing process: instrument the Python code and hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["vtdwalk", "reference", "targets"]):
        sys.path.insert(0, str(HERE))
        import targets

    atheris.Setup([sys.argv[0], *argv], targets.TARGETS[target])
    atheris.Fuzz()


def run_one(target: str, seconds: int, out: Path, extra: list[str]) -> dict[str, object]:
    corpus = out / "corpus" / target
    artifacts = out / "artifacts"
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        sys.path.insert(0, str(HERE))
        import targets

        for i, seed in enumerate(targets.SEEDS.get(target, list)()):
            (corpus / f"seed-{i}").write_bytes(seed)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/{target}-",
        "-max_len=20000" if target == "walk" else "-max_len=8192",
        "-rss_limit_mb=4096",
        "-timeout=30",
        "-print_final_stats=1",
        *extra,
        str(corpus),
        *map(str, seed_dirs(target)),
    ]
    cmd = [sys.executable, __file__, "--child", target, "--", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": ""})
    log = out / f"{target}.log"
    log.write_text(proc.stdout + proc.stderr)
    execs, cov, ft = 0, 0, 0
    for m in STATS.finditer(proc.stderr):
        execs, cov, ft = int(m[1]), int(m[2]), int(m[3])
    m2 = re.search(r"stat::number_of_executed_units:\s+(\d+)", proc.stderr)
    if m2:
        execs = int(m2[1])
    crashed = proc.returncode != 0
    return {
        "target": target,
        "seconds": seconds,
        "executions": execs,
        "cov": cov,
        "ft": ft,
        "corpus": len(list(corpus.iterdir())),
        "crashed": crashed,
        "log": str(log),
    }


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        target = sys.argv[2]
        child(target, sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("targets", nargs="*", help=f"some of {NAMES} (default: all)")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "20")))
    ap.add_argument("--out", type=Path, default=REPO / ".fuzz")
    ap.add_argument("--replay", type=Path, help="run the target once on this input")
    args = ap.parse_args()
    names = args.targets or NAMES
    if unknown := set(names) - set(NAMES):
        ap.error(f"unknown targets {sorted(unknown)}; choose from {NAMES}")
    if args.replay is not None:
        sys.path.insert(0, str(HERE))
        import targets

        for t in names:
            targets.TARGETS[t](args.replay.read_bytes())
            print(f"{t}: {args.replay} passes")
        return 0
    results = [run_one(t, args.seconds, args.out, []) for t in names]
    print(f"{'target':<10} {'seconds':>7} {'execs':>10} {'cov':>6} {'ft':>6} {'corpus':>7}  result")
    for r in results:
        verdict = f"CRASH, see {r['log']}" if r["crashed"] else "ok"
        print(
            f"{r['target']:<10} {r['seconds']:>7} {r['executions']:>10} {r['cov']:>6} "
            f"{r['ft']:>6} {r['corpus']:>7}  {verdict}"
        )
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
