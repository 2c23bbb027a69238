"""An emulated device doing DMA through vtdwalk, the way an emulator embeds it.

A toy network card with a receive ring: the "guest driver" side allocates buffers, maps them
into the card's domain and writes descriptors; the "device model" side only knows IOVAs. Every
DMA it issues goes through ``Platform.translate`` (one page at a time, split at page
boundaries, as an emulator's memory core does), then reads or writes host memory. A DMA the
IOMMU refuses is reported to the device model as an error, as a real bus would abort it.

Run: python examples/device_model.py
"""

from __future__ import annotations

import struct

import vtdwalk

RING_IOVA = 0x10_0000
BUF_IOVA = 0x20_0000
DESC = struct.Struct("<QII")  # buffer IOVA, length, flags (bit 0: owned by the device)


class DmaError(Exception):
    """The IOMMU aborted a DMA."""


class DmaPort:
    """What an emulated device sees: read and write at IOVAs, translated by its IOMMU."""

    def __init__(self, platform: vtdwalk.Platform, bdf: str) -> None:
        self.p = platform
        self.bdf = bdf

    def _chunks(self, iova: int, length: int, write: bool) -> list[tuple[int, int]]:
        out = []
        while length:
            try:
                t = self.p.translate(self.bdf, iova, write=write)
            except vtdwalk.DmaFault as f:
                raise DmaError(
                    f"{self.bdf}: DMA {'write' if write else 'read'} at {iova:#x}: {f.name}"
                ) from f
            room = t.page_size - (iova & (t.page_size - 1))
            n = min(room, length)
            out.append((t.hpa, n))
            iova += n
            length -= n
        return out

    def read(self, iova: int, length: int) -> bytes:
        return b"".join(self.p.mem.read(h, n) for h, n in self._chunks(iova, length, False))

    def write(self, iova: int, data: bytes) -> None:
        at = 0
        for h, n in self._chunks(iova, len(data), True):
            self.p.mem.write(h, data[at : at + n])
            at += n


class ToyNic:
    """Receives packets into the buffers its ring describes."""

    def __init__(self, port: DmaPort, ring_iova: int, entries: int) -> None:
        self.port, self.ring, self.entries, self.head = port, ring_iova, entries, 0

    def receive(self, packet: bytes) -> bool:
        at = self.ring + self.head * DESC.size
        buf, length, flags = DESC.unpack(self.port.read(at, DESC.size))
        if not flags & 1:
            return False  # no buffer posted: drop
        self.port.write(buf, packet[:length])
        self.port.write(at, DESC.pack(buf, min(length, len(packet)), 0))  # hand it back
        self.head = (self.head + 1) % self.entries
        return True


def main() -> None:
    p = vtdwalk.Platform.default()
    dom = p.create_domain()
    p.assign_device(dom, "02:00.0")  # the X540 NIC on socket 0
    # The guest driver: a ring page and four 2 KiB buffers (straddling a page boundary too).
    ring = p.mem.alloc_pages(1, node=dom.node)
    bufs = p.mem.alloc_pages(3, node=dom.node)
    dom.map(RING_IOVA, ring, 0x1000)
    dom.map(BUF_IOVA, bufs, 0x3000)
    for i in range(4):
        desc = DESC.pack(BUF_IOVA + i * 0x800 + 0x400, 0x800, 1)
        p.mem.write(ring + i * DESC.size, desc)

    nic = ToyNic(DmaPort(p, "02:00.0"), RING_IOVA, 4)
    for i in range(4):
        assert nic.receive(bytes([0xA0 + i]) * 0x800)
    got = p.mem.read(bufs + 0x400 + 3 * 0x800 + 0x7FC, 4)  # the end of the last, in page 3
    print("packet 3 landed in host memory:", got.hex())
    assert got == bytes([0xA3]) * 4

    # The driver unmaps the buffers; the next DMA is aborted by the IOMMU, not the device.
    dom.unmap(BUF_IOVA, 0x3000)
    p.mem.write(ring, DESC.pack(BUF_IOVA, 0x800, 1))
    try:
        nic.receive(b"late packet")
    except DmaError as e:
        print("after unmap:", e)


if __name__ == "__main__":
    main()
