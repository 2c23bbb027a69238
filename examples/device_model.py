"""An emulated device behind a VT-d unit, the way an emulator embeds vtdwalk.

The unit is a ``vtdwalk.Remapper`` in its reset state: a register page the emulator would map
at the DRHD base, and a DMA port for the devices behind it. A small guest driver brings it up
the way Linux's and Xen's drivers do, through registers only (root table, global context and
IOTLB invalidation, translation enable, fault event message), and builds its tables in guest
memory. A toy network card, the device model, knows only IOVAs: it reads its receive ring and
writes packets with ``dma_read``/``dma_write``, which split at page boundaries as a bus does.
When the driver unmaps a buffer and invalidates the IOTLB, the card's next DMA is aborted by
the unit, which records the fault and sends the fault event the driver handles.

Run: python examples/device_model.py
"""

from __future__ import annotations

import struct

import vtdwalk

# The guest driver's register map (VT-d architecture; Linux's intel-iommu.h has these names).
DMAR_GCMD_REG, DMAR_GSTS_REG, DMAR_RTADDR_REG, DMAR_CCMD_REG = 0x18, 0x1C, 0x20, 0x28
DMAR_FSTS_REG, DMAR_FECTL_REG, DMAR_FEDATA_REG, DMAR_FEADDR_REG = 0x34, 0x38, 0x3C, 0x40
DMAR_CAP_REG, DMAR_ECAP_REG = 0x08, 0x10
DMA_GCMD_TE, DMA_GCMD_SRTP = 1 << 31, 1 << 30
ONE_SHOT_BITS = 0x6900_0000  # SRTP, SFL, WBF, SIRTP: never written back from GSTS
DMA_CCMD_ICC, DMA_CCMD_GLOBAL = 1 << 63, 1 << 61
DMA_TLB_IVT, DMA_TLB_GLOBAL, DMA_TLB_PSI = 1 << 63, 1 << 60, 3 << 60
FAULT_VECTOR = 0x41

RING_IOVA = 0x10_0000
BUF_IOVA = 0x20_0000
NIC = 0x0200  # source-id of 02:00.0
DID = 1
DESC = struct.Struct("<QII")  # buffer IOVA, length, flags (bit 0: owned by the device)


class GuestDriver:
    """The guest's VT-d driver for one unit: registers through ``mmio_*``, tables in memory."""

    def __init__(self, unit: vtdwalk.Remapper, mem: vtdwalk.PhysMem) -> None:
        self.unit, self.mem = unit, mem
        self.cap = unit.mmio_read(DMAR_CAP_REG, 8)
        ecap = unit.mmio_read(DMAR_ECAP_REG, 8)
        self.iotlb_reg = ((ecap >> 8) & 0x3FF) * 16 + 8  # ECAP.IRO: IVA, then IOTLB
        self.frcd_reg = ((self.cap >> 24) & 0x3FF) * 16  # CAP.FRO
        self.root = vtdwalk.RootTable(mem)
        self.pt = vtdwalk.PageTable(mem, levels=4)
        self.pt.leaf_table(0, alloc=True, level=4)  # the top-level table: the context's pointer

    def _wait(self, reg: int, size: int, mask: int, want: int) -> None:
        for _ in range(1000):
            if self.unit.mmio_read(reg, size) & mask == want:
                return
        raise RuntimeError("DMAR hardware is malfunctioning")

    def _gcmd(self, bit: int) -> None:
        sts = self.unit.mmio_read(DMAR_GSTS_REG, 4) & ~ONE_SHOT_BITS
        self.unit.mmio_write(DMAR_GCMD_REG, 4, sts | bit)
        self._wait(DMAR_GSTS_REG, 4, bit, bit)

    def flush_context_global(self) -> None:
        self.unit.mmio_write(DMAR_CCMD_REG, 8, DMA_CCMD_ICC | DMA_CCMD_GLOBAL)
        self._wait(DMAR_CCMD_REG, 8, DMA_CCMD_ICC, 0)

    def flush_iotlb(self, gran: int, did: int = 0, addr: int = 0, order: int = 0) -> None:
        if gran == DMA_TLB_PSI:
            self.unit.mmio_write(self.iotlb_reg - 8, 8, addr | order)  # IVA
        self.unit.mmio_write(self.iotlb_reg, 8, DMA_TLB_IVT | gran | did << 32)
        self._wait(self.iotlb_reg, 8, DMA_TLB_IVT, 0)

    def init_hw(self) -> None:
        """Fault event message, root table, global invalidation, translation on."""
        self.unit.mmio_write(DMAR_FEDATA_REG, 4, FAULT_VECTOR)
        self.unit.mmio_write(DMAR_FEADDR_REG, 4, 0xFEE0_0000)  # APIC 0
        self.unit.mmio_write(DMAR_FECTL_REG, 4, 0)  # unmask
        self.unit.mmio_write(DMAR_RTADDR_REG, 8, self.root.alloc())
        self._gcmd(DMA_GCMD_SRTP)
        self.flush_context_global()
        self.flush_iotlb(DMA_TLB_GLOBAL)
        self._gcmd(DMA_GCMD_TE)

    def attach(self, sid: int) -> None:
        # A new context entry: nothing was cached for it (no caching mode), no flush needed.
        self.root.set_context(sid >> 8, sid & 0xFF, self.pt.root, aw=2, did=DID)

    def map(self, iova: int, maddr: int, size: int) -> None:
        self.pt.map(iova, maddr, size)

    def unmap(self, iova: int, size: int) -> None:
        self.pt.unmap(iova, size)
        order = (size // 4096 - 1).bit_length()  # pages as a power of two
        self.flush_iotlb(DMA_TLB_PSI, DID, iova, order)

    def fault_handler(self, irq: vtdwalk.Interrupt) -> None:
        """The fault event: read and clear the pending fault records (FSTS.FRI on)."""
        print(f"fault event: vector {irq.vector:#x} to APIC {irq.destination}")
        i = (self.unit.mmio_read(DMAR_FSTS_REG, 4) >> 8) & 0xFF
        hi = self.unit.mmio_read(self.frcd_reg + 16 * i + 8, 8)
        while hi >> 63:
            lo = self.unit.mmio_read(self.frcd_reg + 16 * i, 8)
            kind = "read" if hi >> 62 & 1 else "write"
            reason = (hi >> 32) & 0xFF
            print(f"  record {i}: reason {reason:#x} sid {hi & 0xFFFF:#06x} {kind} at {lo:#x}")
            self.unit.mmio_write(self.frcd_reg + 16 * i + 12, 4, 1 << 31)  # clear F
            i = (i + 1) % (((self.cap >> 40) & 0xFF) + 1)
            hi = self.unit.mmio_read(self.frcd_reg + 16 * i + 8, 8)


class ToyNic:
    """Receives packets into the buffers its ring describes; knows only IOVAs."""

    def __init__(self, unit: vtdwalk.Remapper, sid: int, ring_iova: int, entries: int) -> None:
        self.unit, self.sid = unit, sid
        self.ring, self.entries, self.head = ring_iova, entries, 0

    def receive(self, packet: bytes) -> bool:
        at = self.ring + self.head * DESC.size
        buf, length, flags = DESC.unpack(self.unit.dma_read(self.sid, at, DESC.size))
        if not flags & 1:
            return False  # no buffer posted: drop
        self.unit.dma_write(self.sid, buf, packet[:length])
        self.unit.dma_write(self.sid, at, DESC.pack(buf, min(length, len(packet)), 0))
        self.head = (self.head + 1) % self.entries
        return True


def main() -> None:
    mem = vtdwalk.PhysMem([(0, 64 << 20)])
    driver: GuestDriver | None = None

    def interrupt(irq: vtdwalk.Interrupt) -> None:
        assert driver is not None
        driver.fault_handler(irq)

    unit = vtdwalk.Remapper(mem, interrupt=interrupt)  # reset: translation off
    driver = GuestDriver(unit, mem)
    driver.init_hw()
    driver.attach(NIC)
    # The driver's ring page and four 2 KiB buffers (one straddling a page boundary).
    ring = mem.alloc_pages(1)
    bufs = mem.alloc_pages(4)
    driver.map(RING_IOVA, ring, 0x1000)
    driver.map(BUF_IOVA, bufs, 0x4000)
    for i in range(4):
        mem.write(ring + i * DESC.size, DESC.pack(BUF_IOVA + i * 0x800 + 0x400, 0x800, 1))

    nic = ToyNic(unit, NIC, RING_IOVA, 4)
    for i in range(4):
        assert nic.receive(bytes([0xA0 + i]) * 0x800)
    got = mem.read(bufs + 0x400 + 3 * 0x800 + 0x7FC, 4)  # the end of the last, in page 3
    print("packet 3 landed in host memory:", got.hex())
    assert got == bytes([0xA3]) * 4

    # The driver unmaps the buffers (and invalidates the IOTLB); the card's next DMA is
    # aborted by the unit, not by the card.
    driver.unmap(BUF_IOVA, 0x4000)
    mem.write(ring, DESC.pack(BUF_IOVA, 0x800, 1))
    try:
        nic.receive(b"late packet")
    except vtdwalk.DmaFault as f:
        print(f"after unmap: DMA {f.name} at {f.iova:#x} aborted after {f.transferred} bytes")


if __name__ == "__main__":
    main()
