"""Nodes over memory the embedding program owns: `PhysMem(nodes=[(base, buffer)])`.

The buffer is used in place (no copy): writes made through either side are seen by the other,
the buffer stays alive and cannot be resized while the arena uses it, and a read-only buffer
(a RAM dump mapped with ACCESS_READ) can be read and walked but refuses writes.
"""

from __future__ import annotations

import gc
import mmap
from pathlib import Path

import numpy as np
import pytest

from vtdwalk import InvalidArgument, MemoryAccessError, PhysMem
from vtdwalk.errors import BadFree

PAGE = 4096
BASE = 0x1_0000_0000


def test_bytearray_node_sees_writes_both_ways() -> None:
    ram = bytearray(4 * PAGE)
    m = PhysMem([(BASE, ram)])
    ram[8:16] = (0x1122334455667788).to_bytes(8, "little")
    assert m.read_u64(BASE + 8) == 0x1122334455667788
    m.write_u64(BASE + PAGE, 0xDEAD_BEEF)
    assert int.from_bytes(ram[PAGE : PAGE + 8], "little") == 0xDEAD_BEEF
    m.write(BASE + 3 * PAGE + 5, b"xyz")
    assert ram[3 * PAGE + 5 : 3 * PAGE + 8] == b"xyz"
    assert m.read(BASE + 3 * PAGE + 4, 5) == b"\0xyz\0"
    assert m.nodes == [(BASE, 4 * PAGE)]


def test_numpy_array_node_is_used_in_place() -> None:
    words = np.zeros(1024, dtype=np.uint64)
    m = PhysMem([(0, words), (1 << 30, 16 * PAGE)])
    words[5] = 77
    assert m.read_u64(40) == 77
    m.write_u64s(8 * 600, np.arange(3, dtype=np.uint64))
    assert list(words[600:603]) == [0, 1, 2]
    # The buffer's pages belong to the program: none are handed out or freeable.
    s = m.stats()[0]
    assert (s["total_pages"], s["reserved_pages"], s["allocated_pages"], s["free_pages"]) == (
        2,
        2,
        0,
        0,
    )
    assert s["backed_pages"] == 2
    a = m.alloc_pages(1, node=0)
    assert m.node_of(a) == 1
    assert not m.is_allocated(0x1000)
    with pytest.raises(BadFree):
        m.free_pages(0x1000)


def test_buffer_is_kept_alive_and_cannot_be_resized_while_in_use() -> None:
    ram = bytearray(2 * PAGE)
    ram[0] = 0x5A
    m = PhysMem([(0, ram)])
    with pytest.raises(BufferError):
        ram.extend(b"\0" * PAGE)
    with pytest.raises(BufferError):
        del ram[0:PAGE]
    assert len(ram) == 2 * PAGE
    # The arena keeps the memory alive after the program drops its own reference.
    del ram
    gc.collect()
    assert m.read_u64(0) == 0x5A
    m.write_u64(PAGE, 1)
    assert m.read_u64(PAGE) == 1


def test_buffer_is_released_with_the_arena() -> None:
    ram = bytearray(PAGE)
    m = PhysMem([(0, ram)])
    del m
    gc.collect()
    ram.extend(b"\0" * PAGE)  # no export left: resizing works again
    assert len(ram) == 2 * PAGE


def test_read_only_image_faults_on_write_and_changes_nothing(tmp_path: Path) -> None:
    image = tmp_path / "ram.bin"
    data = bytearray(4 * PAGE)
    data[PAGE : PAGE + 8] = (0xFEED).to_bytes(8, "little")
    image.write_bytes(bytes(data))
    with image.open("rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        m = PhysMem([(0x8000_0000, mm)])
        assert m.read_u64(0x8000_0000 + PAGE) == 0xFEED
        with pytest.raises(MemoryAccessError, match="read-only"):
            m.write_u64(0x8000_0000, 1)
        with pytest.raises(MemoryAccessError, match="read-only"):
            m.write(0x8000_0000 + 17, b"ab")
        with pytest.raises(MemoryAccessError, match="read-only"):
            m.write_u64s(0x8000_0000, np.ones(4, dtype=np.uint64))
        assert m.read(0x8000_0000, 32) == bytes(32)
        # The exporter is held: the map cannot be closed while the arena uses it.
        with pytest.raises(BufferError):
            mm.close()
        del m
        gc.collect()
        mm.close()
    assert image.read_bytes() == bytes(data)
    # bytes are read-only buffers too.
    ro = PhysMem([(0, bytes(PAGE))])
    with pytest.raises(MemoryAccessError):
        ro.write_u64(0, 1)


def test_copy_on_write_image_takes_writes_and_leaves_the_file(tmp_path: Path) -> None:
    image = tmp_path / "ram.bin"
    image.write_bytes(bytes(2 * PAGE))
    with image.open("r+b") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        m = PhysMem([(0, mm)])
        m.write_u64(PAGE, 0xABCD)
        assert mm[PAGE : PAGE + 2] == b"\xcd\xab"
        mm[0] = 9
        assert m.read_u64(0) == 9
        del m
        gc.collect()
        mm.close()
    assert image.read_bytes() == bytes(2 * PAGE)


def test_anonymous_mmap_node_sees_writes_both_ways() -> None:
    mm = mmap.mmap(-1, 8 * PAGE)
    m = PhysMem([(0, 16 * PAGE), (16 * PAGE, mm)])
    mm[16:24] = (42).to_bytes(8, "little")
    assert m.read_u64(16 * PAGE + 16) == 42
    m.write_u64(16 * PAGE + 7 * PAGE, 43)
    assert int.from_bytes(mm[7 * PAGE : 7 * PAGE + 8], "little") == 43
    assert m.node_of(16 * PAGE + 5) == 1


@pytest.mark.parametrize(
    ("buffer", "why"),
    [
        (bytearray(PAGE + 1), "multiple of 4 KiB"),
        (bytearray(0), "multiple of 4 KiB"),
        (memoryview(bytearray(2 * PAGE))[3 : 3 + PAGE], "aligned"),
        (np.zeros((2, PAGE), dtype=np.uint8)[:, ::2], "contiguous"),
        ("x" * PAGE, "bytes-like"),
    ],
)
def test_bad_buffers_are_refused_naming_nodes(buffer: object, why: str) -> None:
    with pytest.raises(InvalidArgument, match="nodes") as e:
        PhysMem([(0, buffer)])  # type: ignore[list-item]
    assert why in str(e.value)


def test_message_for_a_large_bad_node_quotes_a_short_prefix() -> None:
    big = bytearray(1 << 22)
    with pytest.raises(InvalidArgument) as e:
        PhysMem(big)  # type: ignore[arg-type]
    assert len(str(e.value)) < 300
