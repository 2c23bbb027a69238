"""The driver's one interface to a unit's hardware: its register page, and the invalidation
queue it reads from memory.

Xen reaches a unit through ``iommu_set_root_entry``, ``iommu_enable_translation``,
``enable_qinval``, ``enable_intremap`` and the ``iommu_flush`` table (``context``, ``iotlb``
and the interrupt-entry cache: register-based or queued); :class:`UnitPort` is that seam, and it
does what Xen does: it reads and writes the unit's registers (``mmio_read``/``mmio_write``),
writes invalidation descriptors into the queue's memory, and polls until the unit reports
completion. The vocabulary (register offsets, command bits, queue registers, descriptors) comes
from the native spec layer (:class:`vtdwalk._core.Regs`, :class:`vtdwalk._core.Descriptor`);
Python composes and decodes no register or descriptor itself. No other module of the driver
touches the hardware.

Flushes go through the queue once :meth:`UnitPort.enable_qinval` has run (the unit refuses
register-based invalidation while QIE is set), through CCMD and the IOTLB registers before.
Queued, each operation is one descriptor followed by a wait descriptor whose status write the
port polls in memory, as Xen's ``queue_invalidate_wait`` does (SW and FN, status data 1 over 0).
A descriptor the unit refuses (FSTS.IQE) raises :class:`~vtdwalk.errors.InvalidationError`
naming the unit and the descriptor; the port then drops what is left in the queue (IQT set to
IQH) and clears IQE, so the queue works again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vtdwalk._core import Cap, Descriptor, Ecap, Regs, Remapper
from vtdwalk.errors import InvalidationError, PlatformError

if TYPE_CHECKING:
    from vtdwalk._core import PhysMem

__all__ = ["QUEUE_PAGES", "UnitPort"]

#: Polls before a command counts as lost (Xen panics after 1 s: "DMAR hardware malfunction").
POLLS = 1000
#: Xen's QINVAL_PAGE_ORDER 2 (2019): four pages of 16-byte descriptors, 1024 entries.
QUEUE_PAGES = 4
#: Descriptor bytes in a legacy (128-bit) queue.
DESCRIPTOR_SIZE = 16
#: Xen's QINVAL_STAT_INIT and QINVAL_STAT_DONE: the wait descriptor's status data.
_STAT_INIT = 0
_STAT_DONE = 1
_STAT_INIT_BYTES = _STAT_INIT.to_bytes(4, "little")


@dataclass
class _Queue:
    """The invalidation queue as the driver keeps it: base, entries, the tail it wrote last,
    and the status slot its wait descriptors write."""

    base: int
    pages: int
    entries: int
    status: int
    tail: int = 0
    #: The head as last seen: the unit has read every descriptor before it (a completed wait
    #: moves it to the tail). IQH is read again only when the queue looks full.
    head: int = 0
    #: The wait descriptor every operation ends with (Xen's: SW and FN, status data 1).
    wait: Descriptor | None = None


class UnitPort:
    """The driver's side of one unit: CAP/ECAP, root table, translation, the invalidation
    queue, interrupt remapping, cache invalidation; through the unit's registers and the
    queue's memory.

    ``descriptors`` counts the descriptors the port queued, by :attr:`Descriptor.kind`
    ("context_cache", "iotlb", "device_tlb", "iec", "wait").
    """

    __slots__ = (
        "_cap",
        "_ecap",
        "_hw",
        "_iotlb",
        "_iva",
        "_mem",
        "_queue",
        "descriptors",
        "name",
    )

    def __init__(self, hardware: Remapper, mem: PhysMem, name: str = "unit") -> None:
        self._hw = hardware
        self._mem = mem
        self.name = name
        self._cap = Cap(self._hw.mmio_read(Regs.CAP, 8))
        self._ecap = Ecap(self._hw.mmio_read(Regs.ECAP, 8))
        self._iva = Regs.iva_offset(self._ecap)
        self._iotlb = Regs.iotlb_offset(self._ecap)
        self._queue: _Queue | None = None
        self.descriptors: Counter[str] = Counter()

    @classmethod
    def connect(
        cls,
        mem: PhysMem,
        cap: int,
        ecap: int,
        iotlb_entries: int,
        fault_records: int,
        name: str = "unit",
    ) -> UnitPort:
        """The unit's hardware in its reset state (translation, queue and interrupt remapping
        off, no root table) and its port. ``fault_records`` sets CAP.NFR."""
        return cls(
            Remapper(
                mem,
                cap=cap,
                ecap=ecap,
                iotlb_entries=iotlb_entries,
                fault_records=fault_records,
            ),
            mem,
            name,
        )

    @property
    def hardware(self) -> Remapper:
        """The unit's hardware model, for the device side (DMA, interrupts, statistics, fault
        records); the driver itself goes through the methods below."""
        return self._hw

    # ---- capabilities, as the registers report them
    @property
    def cap(self) -> Cap:
        return self._cap

    @property
    def ecap(self) -> Ecap:
        return self._ecap

    @property
    def iotlb_offset(self) -> int:
        """Where the IOTLB register pair (IVA, IOTLB) starts: ECAP.IRO in bytes."""
        return self._iva

    @property
    def frcd_offset(self) -> int:
        """Where the fault recording registers start: CAP.FRO in bytes."""
        return int(Regs.frcd_offset(self._cap))

    @property
    def fault_records(self) -> int:
        """How many fault recording registers there are (CAP.NFR + 1)."""
        return int(Regs.fault_records(self._cap))

    @property
    def queued(self) -> bool:
        """True once the invalidation queue is enabled: flushes go through it."""
        return self._queue is not None

    # ---- registers
    def _poll(self, offset: int, size: int, done: Callable[[int], bool]) -> int:
        for _ in range(POLLS):
            v = self._hw.mmio_read(offset, size)
            if done(v):
                return v
        raise PlatformError(
            f"DMAR hardware malfunction: {self.name}: register {offset:#x} never completed"
        )

    def _command(self, bit: int, on: bool) -> None:
        """One GCMD bit set or cleared as Xen and Linux do: GSTS without its one-shot bits,
        the bit changed, written to GCMD; then GSTS polled until it follows."""
        sts = Regs.gcmd_from_gsts(self._hw.mmio_read(Regs.GSTS, 4))
        self._hw.mmio_write(Regs.GCMD, 4, (sts | bit) if on else (sts & ~bit))
        want = bit if on else 0
        self._poll(Regs.GSTS, 4, lambda v: v & bit == want)

    def set_root_table(self, maddr: int) -> None:
        """``iommu_set_root_entry``: RTADDR, then SRTP, then wait for RTPS."""
        self._hw.mmio_write(Regs.RTADDR, 8, maddr)
        self._command(Regs.SRTP, True)

    def enable_translation(self) -> None:
        """``iommu_enable_translation``: TE, then wait for TES."""
        self._command(Regs.TE, True)

    def disable_translation(self) -> None:
        """``iommu_disable_translation``: TE cleared, then wait for TES to clear."""
        self._command(Regs.TE, False)

    def shut_down(self) -> None:
        """Translation, interrupt remapping and the queue off, and no root table, before the
        tables are freed (Xen's ``disable_intremap``, ``disable_qinval``, then TE)."""
        self.disable_translation()
        if self._hw.mmio_read(Regs.GSTS, 4) & Regs.IRE:
            self._command(Regs.IRE, False)
        self.disable_qinval()
        self.set_root_table(0)

    # ---- the invalidation queue (Xen's qinval.c)
    def enable_qinval(self, base: int, pages: int, status: int) -> None:
        """``enable_qinval``: IQA (the queue at ``base``, ``pages`` 4 KiB pages: QS = log2 of
        them), IQT 0, QIE, wait for QIES. ``status`` is the 4-byte slot the wait descriptors
        write. From here on every flush goes through the queue."""
        if pages < 1 or pages & (pages - 1):
            raise PlatformError(f"{self.name}: a queue of {pages} pages is not a power of two")
        qs = pages.bit_length() - 1
        entries = int(Regs.queue_entries(qs))
        if entries * DESCRIPTOR_SIZE != pages * 4096:
            raise PlatformError(f"{self.name}: QS {qs} does not fill {pages} pages")
        self._hw.mmio_write(Regs.IQA, 8, Regs.iqa(base, qs))
        self._hw.mmio_write(Regs.IQT, 8, Regs.iqt(0))
        self._command(Regs.QIE, True)
        wait = Descriptor.wait(status_addr=status, status_data=_STAT_DONE, fence=True)
        self._queue = _Queue(base, pages, entries, status, wait=wait)

    def disable_qinval(self) -> None:
        """``disable_qinval``: wait until the unit has read every descriptor (IQH = IQT), then
        clear QIE; flushes go through the registers again."""
        q = self._queue
        if q is None:
            return
        self._poll(Regs.IQH, 8, lambda v: Regs.iq_index(v) == q.tail)
        self._command(Regs.QIE, False)
        self._queue = None

    @property
    def queue(self) -> tuple[int, int] | None:
        """(base, pages) of the enabled queue, or None."""
        q = self._queue
        return None if q is None else (q.base, q.pages)

    def _head(self) -> int:
        return int(Regs.iq_index(self._hw.mmio_read(Regs.IQH, 8)))

    def _check(self) -> None:
        """FSTS.IQE -> :class:`InvalidationError` with the descriptor at IQH; the queue is
        reset behind it (IQT to IQH, IQE cleared)."""
        if not self._hw.mmio_read(Regs.FSTS, 4) & Regs.IQE:
            return
        q = self._queue
        assert q is not None
        head = self._head()
        raw = self._mem.read(q.base + head * DESCRIPTOR_SIZE, DESCRIPTOR_SIZE)
        bad = Descriptor.decode(
            int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
        )
        # Software's part of the error protocol: skip what is queued, then clear IQE (W1C).
        self._hw.mmio_write(Regs.IQT, 8, Regs.iqt(head))
        self._hw.mmio_write(Regs.FSTS, 4, Regs.IQE)
        q.tail = q.head = head
        raise InvalidationError(
            f"{self.name}: the invalidation queue refused descriptor {head} ({bad.kind}, "
            f"{bad.lo:#018x} {bad.hi:#018x}) (FSTS.IQE)",
            self.name,
            bad,
            head,
        )

    def _post(self, d: Descriptor) -> None:
        """Xen's ``qinval_next_index`` + ``qinval_update_qtail``: wait while the queue is full
        (never overrun the head), write the descriptor at the tail, move IQT past it."""
        q = self._queue
        assert q is not None
        index = q.tail
        nxt = (index + 1) % q.entries
        if nxt == q.head:
            for _ in range(POLLS):
                q.head = self._head()
                if q.head != nxt:
                    break
                self._check()
            else:
                raise InvalidationError(
                    f"{self.name}: the invalidation queue stays full (IQH {nxt})", self.name
                )
        self._mem.write(q.base + index * DESCRIPTOR_SIZE, d.to_bytes())
        self._hw.mmio_write(Regs.IQT, 8, Regs.iqt(nxt))
        q.tail = nxt
        self.descriptors[d.kind] += 1

    def _wait(self) -> None:
        """``queue_invalidate_wait``: a wait descriptor (status write, fence) and the status
        slot polled until the unit writes it."""
        q = self._queue
        assert q is not None
        assert q.wait is not None
        self._mem.write(q.status, _STAT_INIT_BYTES)
        self._post(q.wait)
        for _ in range(POLLS):
            if int.from_bytes(self._mem.read(q.status, 4), "little") == _STAT_DONE:
                q.head = q.tail  # the wait ran: so did everything queued before it
                return
            self._check()
        raise InvalidationError(
            f"{self.name}: the invalidation wait never completed (status at {q.status:#x})",
            self.name,
        )

    def submit(self, d: Descriptor) -> None:
        """One descriptor through the queue, then the wait for it (Xen queues every operation
        this way). Raises :class:`InvalidationError` when the unit refuses it."""
        if self._queue is None:
            raise PlatformError(f"{self.name}: the invalidation queue is not enabled")
        if not isinstance(d, Descriptor):
            raise TypeError(f"d: expected a Descriptor, not {type(d).__name__}")
        self._post(d)
        self._wait()

    # ---- interrupt remapping (Xen's intremap.c)
    def enable_intremap(self, base: int, s: int, eime: bool) -> None:
        """``enable_intremap``: IRTA (the table at ``base``, 2^(s+1) entries, EIME), SIRTP and
        wait for IRTPS, a global interrupt-entry-cache invalidation, then IRE and wait for
        IRES. Needs the queue (Xen: IR requires QI)."""
        if self._queue is None:
            raise PlatformError(f"{self.name}: interrupt remapping needs the invalidation queue")
        self._hw.mmio_write(Regs.IRTA, 8, Regs.irta(base, s, eime=eime))
        self._command(Regs.SIRTP, True)
        self.flush_iec_global()
        self._command(Regs.IRE, True)

    def flush_iec_global(self) -> None:
        """``iommu_flush_iec_global``: every interrupt-entry-cache entry, then a dummy read of
        CAP to drain, as Xen does."""
        self.submit(Descriptor.iec())
        self._hw.mmio_read(Regs.CAP, 8)

    def flush_iec_index(self, index: int, im: int = 0) -> None:
        """``iommu_flush_iec_index``: the 2^im entries from ``index``, then the dummy read."""
        self.submit(Descriptor.iec(index, im=im))
        self._hw.mmio_read(Regs.CAP, 8)

    # ---- context-cache invalidation (queued, or CCMD)
    def _ccmd(self, value: int) -> None:
        self._hw.mmio_write(Regs.CCMD, 8, value)
        self._poll(Regs.CCMD, 8, Regs.ccmd_done)

    def flush_context_global(self) -> None:
        if self._queue is not None:
            self.submit(Descriptor.context_cache("global"))
        else:
            self._ccmd(Regs.ccmd(Regs.GLOBAL))

    def flush_context_domain(self, did: int) -> None:
        if self._queue is not None:
            self.submit(Descriptor.context_cache("domain", did=did))
        else:
            self._ccmd(Regs.ccmd(Regs.DOMAIN, did=did))

    def flush_context_device(self, did: int, sid: int, fm: int = 0) -> None:
        if self._queue is not None:
            self.submit(Descriptor.context_cache("device", did=did, sid=sid, fm=fm))
        else:
            self._ccmd(Regs.ccmd(Regs.DEVICE, did=did, sid=sid, fm=fm))

    # ---- IOTLB invalidation (queued, or IVA + IOTLB at ECAP.IRO)
    def _iotlb_cmd(self, value: int) -> None:
        self._hw.mmio_write(self._iotlb, 8, value)
        self._poll(self._iotlb, 8, Regs.iotlb_done)

    def _iotlb_desc(self, granularity: str, did: int = 0, addr: int = 0, am: int = 0) -> None:
        # DR/DW as CAP.DRD/DWD allow (Xen's flush_iotlb_qi), as Regs.iotlb does for registers.
        self.submit(
            Descriptor.iotlb(
                granularity, did=did, addr=addr, am=am, dr=self._cap.drd, dw=self._cap.dwd
            )
        )

    def flush_iotlb_global(self) -> None:
        if self._queue is not None:
            self._iotlb_desc("global")
        else:
            self._iotlb_cmd(Regs.iotlb(Regs.GLOBAL, cap=self._cap))

    def flush_iotlb_domain(self, did: int) -> None:
        if self._queue is not None:
            self._iotlb_desc("domain", did=did)
        else:
            self._iotlb_cmd(Regs.iotlb(Regs.DOMAIN, did=did, cap=self._cap))

    def flush_iotlb_page(self, did: int, addr: int, am: int) -> None:
        if self._queue is not None:
            self._iotlb_desc("page", did=did, addr=addr, am=am)
        else:
            self._hw.mmio_write(self._iva, 8, Regs.iva(addr, am=am))
            self._iotlb_cmd(Regs.iotlb(Regs.PAGE, did=did, cap=self._cap))

    # ---- device-TLB invalidation (queued only: Xen's dev_invalidate_iotlb)
    def flush_device_tlb(self, sid: int, addr: int, size: bool, qdep: int = 0) -> None:
        """One device-TLB invalidation for the ATS device ``sid`` (``size``: the ATS size
        encoding is in ``addr``). Without a queue there is none to send: register-based
        invalidation has no device-TLB form."""
        if self._queue is not None:
            self.submit(Descriptor.device_tlb(sid, addr, size=size, qdep=qdep))
