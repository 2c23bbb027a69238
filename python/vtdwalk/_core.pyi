"""Typed face of the native module ``vtdwalk._core`` (checked by ``mypy.stubtest``)."""

from typing import TypedDict, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

__version__: str

class NodeStats(TypedDict):
    node: int
    base: int
    size: int
    total_pages: int
    allocated_pages: int
    free_pages: int
    backed_pages: int
    fallbacks: int

@final
class PhysMem:
    """Simulated host physical memory: NUMA nodes, sparse 4 KiB frames, a page allocator."""

    def __new__(cls, nodes: list[tuple[int, int]]) -> PhysMem: ...
    @property
    def nodes(self) -> list[tuple[int, int]]: ...
    @property
    def num_nodes(self) -> int: ...
    def alloc_pages(self, npages: int = 1, node: int | None = None) -> int: ...
    def free_pages(self, maddr: int, npages: int = 1) -> None: ...
    def is_allocated(self, maddr: int) -> bool: ...
    def node_of(self, maddr: int) -> int: ...
    def read(self, maddr: int, n: int) -> bytes: ...
    def write(self, maddr: int, data: Buffer) -> None: ...
    def read_u64(self, maddr: int) -> int: ...
    def write_u64(self, maddr: int, value: int) -> None: ...
    def read_u64s(self, maddr: int, count: int) -> npt.NDArray[np.uint64]: ...
    def write_u64s(self, maddr: int, values: npt.NDArray[np.uint64]) -> None: ...
    def stats(self) -> list[NodeStats]: ...

class RemapperStats(TypedDict):
    hits: int
    misses: int
    evictions: int
    walks: int
    context_hits: int
    context_misses: int
    faults: int
    faults_recorded: int
    faults_suppressed_fpd: int
    faults_compressed: int
    faults_overflow: int
    iotlb_size: int
    context_cache_size: int

@final
class Translation:
    """A translated DMA request."""

    @property
    def hpa(self) -> int: ...
    @property
    def page_size(self) -> int: ...
    @property
    def read(self) -> bool: ...
    @property
    def write(self) -> bool: ...
    @property
    def domain_id(self) -> int: ...
    @property
    def level(self) -> int: ...

@final
class FaultRecord:
    """One recorded fault: reason code and name, requester, address, direction."""

    @property
    def reason(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def sid(self) -> int: ...
    @property
    def iova(self) -> int: ...
    @property
    def fault_address(self) -> int: ...
    @property
    def write(self) -> bool: ...

@final
class Remapper:
    """One VT-d remapping unit (legacy mode) over the tables in a PhysMem."""

    def __new__(
        cls,
        mem: PhysMem,
        root_table: int | None = None,
        cap: int = ...,
        ecap: int = ...,
        iotlb_entries: int = 1024,
        fault_records: int = 8,
        context_cache: bool = True,
    ) -> Remapper: ...
    @property
    def root_table(self) -> int | None: ...
    @root_table.setter
    def root_table(self, value: int | None) -> None: ...
    @property
    def cap(self) -> int: ...
    @property
    def ecap(self) -> int: ...
    @property
    def levels_supported(self) -> list[int]: ...
    @property
    def mgaw(self) -> int: ...
    @property
    def iotlb_entries(self) -> int: ...
    def translate(
        self, sid: int, iova: int, write: bool = False, translation_request: bool = False
    ) -> Translation: ...
    def translate_batch(
        self,
        sids: npt.NDArray[np.uint16],
        iovas: npt.NDArray[np.uint64],
        writes: npt.NDArray[np.bool_] | None = None,
        threads: int | None = None,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]: ...
    def invalidate_iotlb(
        self, granularity: str, did: int | None = None, addr: int | None = None, am: int = 0
    ) -> None: ...
    def invalidate_context(
        self, granularity: str, did: int | None = None, sid: int | None = None, fm: int = 0
    ) -> None: ...
    def faults(self) -> list[FaultRecord]: ...
    def fault_counts(self) -> dict[int, int]: ...
    def stats(self) -> RemapperStats: ...
