"""Hypothesis strategies shared by the property tests (tests/test_prop_*.py).

Only top-level names of ``vtdwalk`` are used. DMAR structures are drawn field by field from the
layouts of the VT-d specification (chapter 8): a DRHD with device scopes, RMRR, ATSR, RHSA,
ANDD, and the table header around them.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from vtdwalk import dmar

# A fast profile for every run (CI), a long one for `make fuzz`
# (`pytest --hypothesis-profile=long`). Registered here and loaded from conftest.py.
settings.register_profile(
    "fast", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck)
)


def machine_settings() -> settings:
    """Settings for the stateful tests: a quarter of the profile's examples (each runs a whole
    operation sequence), at least 25; call it after the profile is loaded (test module import)."""
    n = settings().max_examples
    return settings(max_examples=max(25, n // 4), stateful_step_count=30 if n <= 100 else 60)


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, (1 << 64) - 1)

# Latin-1 text without NUL (a NUL ends a fixed-size header string or an ANDD name).
_latin1 = st.characters(min_codepoint=1, max_codepoint=0xFF)


def fixed_str(size: int) -> st.SearchStrategy[str]:
    return st.text(_latin1, min_size=0, max_size=size)


@st.composite
def device_scopes(draw: st.DrawFn) -> dmar.DeviceScope:
    """A device scope: type 1-5, a path of one to four (device, function) elements."""
    path = draw(st.lists(st.tuples(st.integers(0, 31), st.integers(0, 7)), min_size=1, max_size=4))
    return dmar.DeviceScope(
        draw(st.integers(dmar.SCOPE_ENDPOINT, dmar.SCOPE_NAMESPACE)),
        flags=draw(u8),
        enumeration_id=draw(u8),
        start_bus=draw(u8),
        path=path,
    )


scope_lists = st.lists(device_scopes(), max_size=6)


@st.composite
def drhds(draw: st.DrawFn) -> dmar.Drhd:
    return dmar.Drhd(
        flags=draw(st.integers(0, 1)),
        segment=draw(u16),
        address=draw(u64.map(lambda a: a & ~0xFFF)),
        scopes=draw(scope_lists),
        size=draw(st.integers(0, 15)),
    )


@st.composite
def rmrrs(draw: st.DrawFn) -> dmar.Rmrr:
    base = draw(st.integers(0, (1 << 52) - 1)) & ~0xFFF
    pages = draw(st.integers(1, 1 << 12))
    return dmar.Rmrr(
        segment=draw(u16), base=base, limit=base + pages * 4096 - 1, scopes=draw(scope_lists)
    )


@st.composite
def atsrs(draw: st.DrawFn) -> dmar.Atsr:
    return dmar.Atsr(flags=draw(st.integers(0, 1)), segment=draw(u16), scopes=draw(scope_lists))


@st.composite
def rhsas(draw: st.DrawFn) -> dmar.Rhsa:
    return dmar.Rhsa(address=draw(u64.map(lambda a: a & ~0xFFF)), proximity_domain=draw(u32))


@st.composite
def andds(draw: st.DrawFn) -> dmar.Andd:
    return dmar.Andd(device_number=draw(u8), name=draw(st.text(_latin1, min_size=1, max_size=40)))


structures = st.one_of(drhds(), rmrrs(), atsrs(), rhsas(), andds())


@st.composite
def dmar_tables(draw: st.DrawFn) -> dmar.DmarTable:
    """A well-formed table: the header fields and up to eight structures."""
    return dmar.DmarTable(
        host_address_width=draw(st.integers(0, 63)),
        flags=draw(st.integers(0, 7)),
        structures=draw(st.lists(structures, max_size=8)),
        revision=draw(u8),
        oem_id=draw(fixed_str(6)),
        oem_table_id=draw(fixed_str(8)),
        oem_revision=draw(u32),
        creator_id=draw(fixed_str(4)),
        creator_revision=draw(u32),
    )


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bit flips, byte writes, a cut, an insertion or a length field
    rewritten (offset 4: the table length; any 16-bit structure length)."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 4))
        if not b:
            b.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        at = draw(st.integers(0, len(b) - 1))
        if kind == 0:
            b[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == 1:
            b[at] = draw(u8)
        elif kind == 2:
            del b[at:]
        elif kind == 3:
            b[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif len(b) >= 8:
            off = draw(st.sampled_from([4, at & ~1]))
            off = min(off, len(b) - 2)
            b[off : off + 2] = draw(u16).to_bytes(2, "little")
    return bytes(b)


def corpus_dir() -> Path:
    """The real DMAR tables shipped in tests/data/dmar-corpus/real."""
    return Path(__file__).resolve().parent / "data" / "dmar-corpus" / "real"
