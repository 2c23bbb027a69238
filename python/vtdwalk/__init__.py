"""vtdwalk: a simulator of Intel VT-d DMA remapping, with a Rust core.

The public API is re-exported here explicitly; see ``__all__``.
"""

from __future__ import annotations

from vtdwalk._core import (
    Cap,
    ContextEntry,
    Ecap,
    FaultRecord,
    Interrupt,
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
    InvalidArgument,
    MemoryAccessError,
    OutOfMemory,
    PlatformError,
    VtdError,
)
from vtdwalk.platform import AtsrUnit, Finding, Platform, RmrrUnit
from vtdwalk.topology import Bdf, Device, DeviceKind, Numa, NumaNode, Topology

__all__ = [
    "AtsrUnit",
    "BadFree",
    "Bdf",
    "Cap",
    "ContextEntry",
    "Device",
    "DeviceKind",
    "DidAllocator",
    "DmaFault",
    "DmarError",
    "Domain",
    "Ecap",
    "FaultRecord",
    "Finding",
    "Interrupt",
    "InvalidArgument",
    "Iommu",
    "MemoryAccessError",
    "Numa",
    "NumaNode",
    "OutOfMemory",
    "PageTable",
    "PhysMem",
    "Platform",
    "PlatformError",
    "Regs",
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
