"""The register-file fuzz target of tests/fuzz (run long by ``make fuzz``) on its seeds and on a
fixed set of random inputs, so that its invariants hold in every test run too."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import targets


def test_the_regs_target_is_registered() -> None:
    import run

    assert "regs" in run.NAMES and targets.TARGETS["regs"] is targets.fuzz_regs


@pytest.mark.parametrize("seed", targets.regs_seeds(), ids=["qi-ir", "no-qi-ir"])
def test_a_driver_start_up_keeps_the_register_rules(seed: bytes) -> None:
    targets.fuzz_regs(seed)


@pytest.mark.parametrize("rng_seed", range(4))
def test_random_register_sequences_keep_the_register_rules(rng_seed: int) -> None:
    rng = random.Random(rng_seed)
    for _ in range(100):
        targets.fuzz_regs(rng.randbytes(rng.randrange(2, 1200)))


def test_a_recorded_fault_sets_ppf_and_clearing_f_clears_it() -> None:
    """The seed's translation faults (an empty root table): the checks above see a pending
    fault, so the PPF/FRI invariant is exercised, not vacuous."""
    from vtdwalk import DmaFault, PhysMem, Remapper

    r = Remapper(PhysMem([(0, 4 * 4096)]), cap=targets.REG_CAP, ecap=targets.REG_ECAPS[0])
    r.mmio_write(0x20, 8, 0)
    r.mmio_write(0x18, 4, 1 << 30)
    r.mmio_write(0x18, 4, 1 << 31)
    with pytest.raises(DmaFault):
        r.translate(0x10, 0)
    assert r.mmio_read(0x34, 4) & 2  # PPF
    assert r.mmio_read(targets.FRO + 8, 8) >> 63 == 1
    r.mmio_write(targets.FRO + 8, 8, 1 << 63)
    assert r.mmio_read(0x34, 4) & 2 == 0
