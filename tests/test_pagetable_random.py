"""Randomised map/unmap sequences checked against a page-granular dict model and against the
pure-Python reference walker of tests/reference/sl_walk.py.

Ranges go up to 6 MiB (2 MiB leaves where allowed); 1 GiB leaves are covered by the
deterministic tests and by the Rust model test, which keeps this model (one dict entry per
4 KiB page) small.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from lookup import leaf
from reference import present_table, sl_walk
from vtdwalk import PageTable, PhysMem

K4 = 1 << 12
M2 = 1 << 21
G1 = 1 << 30
U64_MAX = (1 << 64) - 1

Model = dict[int, tuple[int, bool, bool]]


def model_runs(model: Model) -> list[tuple[int, int, int, bool, bool]]:
    return sl_walk.merge([(i, m, K4, r, w) for i, (m, r, w) in sorted(model.items())])


def run(seed: int, levels: int, superpages: str, steps: int) -> None:
    rnd = random.Random(seed)
    mem = PhysMem([(G1, 1 << 30), (1 << 40, 1 << 30)])
    pt = PageTable(mem, levels=levels, superpages=superpages, node=seed % 2)
    width = pt.width
    span = G1 // 2
    base = (1 << width) - span  # near the top of the address space
    model: Model = {}
    for step in range(steps):
        kind = rnd.randrange(10)
        pick = rnd.randrange(20)
        if pick == 0:
            size = M2
        elif pick == 1:
            size = 3 * M2
        else:
            size = rnd.randrange(1, 40) * K4
        align = min(size, G1) if size >= M2 and size & (M2 - 1) == 0 else K4
        if size == 3 * M2:
            align = M2
        if kind in (5, 6) and rnd.random() < 0.3:
            size, align = rnd.randrange(1, 1 << 14) * K4, K4  # a wide unmap keeps the model small
        iova = base + (rnd.randrange(span - size) & ~(align - 1))
        maddr = rnd.randrange(1 << 40) & ~(align - 1 if rnd.random() < 0.7 else K4 - 1)
        read, write = rnd.choice([(True, True), (True, False), (False, True)])
        pages = range(iova, iova + size, K4)
        was = any(p in model for p in pages)
        if kind < 5:
            assert pt.map(iova, maddr, size, read=read, write=write) == was, step
            for i, p in enumerate(pages):
                model[p] = (maddr + i * K4, read, write)
        elif kind < 8:
            assert pt.unmap(iova, size) == was, step
            for p in pages:
                model.pop(p, None)
        else:
            n = rnd.randrange(1, 64)
            batch = [base + (rnd.randrange(span) & ~(K4 - 1)) for _ in range(n)]
            was = any(p in model for p in batch)
            iovas = np.array(batch, np.uint64)
            if kind == 8:
                targets = [rnd.randrange(1 << 40) & ~(K4 - 1) for _ in range(n)]
                assert pt.map_pages(iovas, np.array(targets, np.uint64), read, write) == was
                for p, m in zip(batch, targets, strict=True):
                    model[p] = (m, read, write)
            else:
                assert pt.unmap_pages(iovas) == was
                for p in batch:
                    model.pop(p, None)
        if step % 250 == 249 or step == steps - 1:
            want = model_runs(model)
            assert pt.mappings() == want, step
            assert sl_walk.merge(sl_walk.leaves(mem, pt.root, levels)) == want, step
            probes = [base + rnd.randrange(span) for _ in range(200)]
            probes += [
                p + rnd.randrange(K4) for p in rnd.sample(sorted(model), min(50, len(model)))
            ]
            got, mapped = pt.lookup_batch(np.array(probes, np.uint64))
            for p, g, m in zip(probes, got.tolist(), mapped.tolist(), strict=True):
                entry = model.get(p & ~(K4 - 1))
                expect = U64_MAX if entry is None else entry[0] + (p & (K4 - 1))
                assert (g, m) == ((0, False) if entry is None else (expect, True))
                walked = sl_walk.walk(mem, pt.root, levels, p)
                assert (walked[0] if walked else U64_MAX) == expect
                single = leaf(pt.lookup(p))
                assert single == walked
                if entry is not None and single is not None:
                    assert single[2:] == entry[1:]
    pt.unmap(base, span)
    assert pt.table_pages() == {pt_node(mem, present_table(pt.root)): 1}
    pt.free()
    assert all(s["allocated_pages"] == 0 for s in mem.stats())


def pt_node(mem: PhysMem, root: int) -> int:
    return mem.node_of(root)


@pytest.mark.parametrize(
    ("seed", "levels", "superpages"),
    [(1, 3, "none"), (2, 4, "2M"), (3, 4, "1G"), (4, 5, "1G")],
)
def test_random_sequences(seed: int, levels: int, superpages: str) -> None:
    run(seed, levels, superpages, 1500)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 13))
def test_random_sequences_long(seed: int) -> None:
    run(seed, 3 + seed % 3, ["none", "2M", "1G"][seed % 3], 5000)
