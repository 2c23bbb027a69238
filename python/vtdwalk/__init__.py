"""vtdwalk: a simulator of Intel VT-d DMA remapping, with a Rust core.

The public API is re-exported here explicitly; see ``__all__``.
"""

from __future__ import annotations

from vtdwalk._core import (
    FaultRecord,
    PageTable,
    PhysMem,
    Remapper,
    RootTable,
    Translation,
    __version__,
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
    "Device",
    "DeviceKind",
    "DidAllocator",
    "DmaFault",
    "DmarError",
    "Domain",
    "FaultRecord",
    "Finding",
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
    "Remapper",
    "RmrrUnit",
    "RootTable",
    "Scope",
    "Topology",
    "Translation",
    "Unit",
    "VtdError",
    "__version__",
    "dmar",
]
