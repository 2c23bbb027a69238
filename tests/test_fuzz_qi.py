"""The invalidation-queue fuzz target of tests/fuzz (run long by ``make fuzz``) on its seeds and
on a fixed set of random inputs, so that its invariants hold in every test run too; and checks
that the seeds reach what the invariants are about (not vacuous)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import targets

from vtdwalk import Descriptor


def test_the_qi_target_is_registered() -> None:
    import run

    assert "qi" in run.NAMES and targets.TARGETS["qi"] is targets.fuzz_qi
    assert targets.SEEDS["qi"] is targets.qi_seeds


@pytest.mark.parametrize("seed", range(12))
def test_a_valid_queue_runs_to_its_tail(seed: int) -> None:
    data = targets.qi_seeds()[seed]
    m = targets.qi_session(data)
    assert m is not None
    ecap = targets.QI_ECAPS[data[0] >> 2 & 3]
    dt, ir = bool(ecap >> 2 & 1), bool(ecap >> 3 & 1)
    if dt and ir:
        # Every descriptor of the seed ran: 9 of them, IQH = IQT, no IQE.
        assert (m.iqe, m.head, m.iqt) == (False, 9, 9 << 4)
        # The wait with SW wrote 0xCAFE at the status page + 8; the wait with IF set IWC,
        # which the seed then cleared.
        assert m.status == {targets.QI_STATUS + 8: 0xCAFE}
        assert not m.iwc
        # After the global context invalidation only the switched-to context may be used.
        assert m.ctx == 1 and m.ctx_allowed == [False, True]
    else:
        # Without ECAP.DT (and IR) the device-TLB descriptor is invalid: the queue stops there.
        assert (m.iqe, m.head) == (True, 4)
        assert m.status == {}
    # The page changes were each followed by an invalidation covering them: every leaf the
    # seed moved is down to the value in memory.
    assert all(len(m.leaf[0][p]) == 1 for p in range(targets.QI_PAGES)), m.leaf[0]
    assert m.leaf[0][3] == [1 << 32 | 0x7_7000]


def test_the_256_bit_seed_runs_to_its_tail() -> None:
    m = targets.qi_session(targets.qi_seeds()[12])
    assert m is not None and m.wide
    assert (m.iqe, m.head, m.iqt) == (False, 4, 4 << 5)
    assert m.status == {targets.QI_STATUS: 1} and m.iwc


def test_a_256_bit_queue_needs_smts_and_bit_4_of_the_tail_clear() -> None:
    body = bytes([0x80, 0]) + Descriptor.iotlb("global").to_bytes(32)
    smts = 3 << 2  # ECAP with SMTS
    m = targets.qi_session(bytes([smts, 4]) + body)
    assert m is not None and (m.iqe, m.head, m.wide) == (False, 1, True)
    m = targets.qi_session(bytes([0, 4]) + body)  # DW without SMTS: IQE at once
    assert m is not None and (m.iqe, m.head) == (True, 0)
    tail = bytes([7]) + (0x10).to_bytes(8, "little") + bytes([4])
    m = targets.qi_session(bytes([smts, 4]) + tail)
    assert m is not None and m.iqe


@pytest.mark.parametrize("rng_seed", range(4))
def test_random_queue_sequences_keep_the_rules(rng_seed: int) -> None:
    rng = random.Random(rng_seed)
    seeds = targets.qi_seeds()
    for _ in range(100):
        if rng.random() < 0.5:
            targets.fuzz_qi(rng.randbytes(rng.randrange(2, 700)))
        else:
            # A seed with a few bytes changed: mostly valid queues with some bad descriptors.
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            targets.fuzz_qi(bytes(data))
