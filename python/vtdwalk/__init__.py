"""vtdwalk: a simulator of Intel VT-d DMA remapping (the Intel IOMMU), with a Rust core.

It models both sides of the wire, after Xen's VT-d driver and the hardware it programs:

* the firmware's ACPI DMAR table: :mod:`vtdwalk.dmar` parses, validates, builds and
  serialises it (``dmar.parse(bytes)``, ``DmarTable.validate()``, ``to_bytes()``);
* a whole machine: :class:`Platform` (``Platform.default()``, ``Platform.from_dmar(path)``)
  builds the remapping units (:class:`Iommu`) with their NUMA nodes, the PCI
  :class:`Topology` and :class:`Numa` memory; ``create_domain``, ``assign_device``,
  ``Domain.map``, ``translate`` and ``translate_batch`` drive it as the driver would;
* the pieces on their own, in Rust: :class:`PhysMem` (sparse NUMA memory and a page
  allocator), :class:`PageTable` (second-level tables), :class:`RootTable` (root and context
  tables), :class:`Remapper` (one unit's hardware: walk, IOTLB, context cache, fault
  recording);
* errors: every error raised on purpose is a :class:`VtdError` (:class:`InvalidArgument`,
  :class:`DmarError`, :class:`PlatformError`, :class:`DmaFault`, :class:`InterruptFault`,
  ...).

Example::

    import vtdwalk
    p = vtdwalk.Platform.default()           # a two-socket Supermicro X10DAi
    dom = p.create_domain()
    p.assign_device(dom, "81:00.0")
    buf = p.mem.alloc_pages(512, node=dom.node)
    dom.map(0x1000_0000, buf, 2 << 20)
    print(p.translate("81:00.0", 0x1000_0123, write=True))

The command line is ``vtdwalk`` (``simulate``, ``dump``, ``dmar``, ``platform``); the
README has the tour, the JSON shapes and the speed figures.
"""

from __future__ import annotations

from vtdwalk._core import (
    Cap,
    ContextEntry,
    Descriptor,
    DeviceTlbInvalidation,
    Ecap,
    FaultRecord,
    Interrupt,
    Irte,
    PageTable,
    PhysMem,
    Regs,
    Remapper,
    RootEntry,
    RootTable,
    Translation,
    __version__,
    aw_to_levels,
    fault_name,
    fault_names,
    levels_to_aw,
    levels_to_width,
)
from vtdwalk.acpi import dmar
from vtdwalk.driver.domain import Domain
from vtdwalk.driver.iommu import DidAllocator, Iommu, Scope, Unit
from vtdwalk.errors import (
    BadFree,
    DmaFault,
    DmarError,
    InterruptFault,
    InvalidArgument,
    InvalidationError,
    MemoryAccessError,
    OutOfMemory,
    PlatformError,
    VtdError,
)
from vtdwalk.platform import AtsrUnit, Finding, Platform, RemapHandle, RmrrUnit
from vtdwalk.topology import Bdf, Device, DeviceKind, Numa, NumaNode, Topology

__all__ = [
    "AtsrUnit",
    "BadFree",
    "Bdf",
    "Cap",
    "ContextEntry",
    "Descriptor",
    "Device",
    "DeviceKind",
    "DeviceTlbInvalidation",
    "DidAllocator",
    "DmaFault",
    "DmarError",
    "Domain",
    "Ecap",
    "FaultRecord",
    "Finding",
    "Interrupt",
    "InterruptFault",
    "InvalidArgument",
    "InvalidationError",
    "Iommu",
    "Irte",
    "MemoryAccessError",
    "Numa",
    "NumaNode",
    "OutOfMemory",
    "PageTable",
    "PhysMem",
    "Platform",
    "PlatformError",
    "Regs",
    "RemapHandle",
    "Remapper",
    "RmrrUnit",
    "RootEntry",
    "RootTable",
    "Scope",
    "Topology",
    "Translation",
    "Unit",
    "VtdError",
    "__version__",
    "aw_to_levels",
    "dmar",
    "fault_name",
    "fault_names",
    "levels_to_aw",
    "levels_to_width",
]
