"""The one exception hierarchy of vtdwalk, rooted at :class:`VtdError`.

Native code (``vtdwalk._core``) raises these same classes. Each mixes in the builtin it refines
(``ValueError`` for bad arguments, ``MemoryError`` for exhaustion) so callers that catch the
builtin keep working.
"""

from __future__ import annotations

__all__ = [
    "BadFree",
    "DmaFault",
    "DmarError",
    "InterruptFault",
    "InvalidArgument",
    "InvalidationError",
    "MemoryAccessError",
    "OutOfMemory",
    "PlatformError",
    "VtdError",
]


class VtdError(Exception):
    """Base of every error vtdwalk raises on purpose."""


class InvalidArgument(VtdError, ValueError):
    """An argument out of range, misaligned, of the wrong type or inconsistent."""


class MemoryAccessError(VtdError, ValueError):
    """An access to machine memory no NUMA node owns, or past a node's end."""


class OutOfMemory(VtdError, MemoryError):
    """No node has the contiguous free pages asked for."""


class BadFree(VtdError, ValueError):
    """A free of pages that are not allocated (double free, misaligned, outside memory)."""


class DmarError(VtdError, ValueError):
    """A malformed ACPI DMAR table; ``offset`` is the byte offset of the problem."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at offset {offset:#x})")
        self.offset = offset


class PlatformError(VtdError):
    """A platform, topology or assignment request the model refuses."""


class InvalidationError(PlatformError):
    """The unit refused a descriptor of its invalidation queue (FSTS.IQE), or did not complete
    one. ``unit`` names the unit; ``descriptor`` is the refused descriptor (a
    :class:`vtdwalk.Descriptor`, None when the queue simply never completed); ``index`` its slot
    in the queue."""

    def __init__(
        self, message: str, unit: str, descriptor: object = None, index: int | None = None
    ) -> None:
        super().__init__(message)
        self.unit = unit
        self.descriptor = descriptor
        self.index = index


class DmaFault(VtdError):
    """A DMA request the remapping hardware faulted, with its architectural reason code.

    ``iova`` is the address of the request that faulted; ``transferred`` counts the bytes of
    the access that completed before it (0 for a single translation)."""

    def __init__(
        self, reason: int, name: str, sid: int, iova: int, write: bool, transferred: int = 0
    ) -> None:
        bdf = f"{sid >> 8:02x}:{(sid >> 3) & 0x1F:02x}.{sid & 7}"
        kind = "write" if write else "read"
        done = f" after {transferred} bytes" if transferred else ""
        super().__init__(f"DMA {kind} by {bdf} at IOVA {iova:#x}: fault {reason:#04x} {name}{done}")
        self.reason = reason
        self.name = name
        self.sid = sid
        self.iova = iova
        self.write = write
        self.transferred = transferred


class InterruptFault(VtdError):
    """An interrupt request the remapping hardware blocked, with its architectural reason code
    (0x20-0x26).

    ``sid`` is the requester; ``index`` the interrupt index computed from the request (None
    when none was: a malformed or compatibility-format request, or one past 0xFFFF);
    ``transferred`` counts the bytes of a ``dma_write`` that completed before it (0 for
    ``msi``)."""

    def __init__(
        self, reason: int, name: str, sid: int, index: int | None = None, transferred: int = 0
    ) -> None:
        bdf = f"{sid >> 8:02x}:{(sid >> 3) & 0x1F:02x}.{sid & 7}"
        at = "" if index is None else f" (index {index})"
        super().__init__(f"interrupt from {bdf}{at} blocked: fault {reason:#04x} {name}")
        self.reason = reason
        self.name = name
        self.sid = sid
        self.index = index
        self.transferred = transferred
