"""vtdwalk: a simulator of Intel VT-d DMA remapping, with a Rust core.

The public API is re-exported here explicitly; see ``__all__``.
"""

from __future__ import annotations

from vtdwalk._core import FaultRecord, PhysMem, Remapper, Translation, __version__
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

__all__ = [
    "BadFree",
    "DmaFault",
    "DmarError",
    "FaultRecord",
    "InvalidArgument",
    "MemoryAccessError",
    "OutOfMemory",
    "PhysMem",
    "PlatformError",
    "Remapper",
    "Translation",
    "VtdError",
    "__version__",
]
