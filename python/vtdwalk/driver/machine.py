"""What the driver's device assignment needs of the machine it runs on.

The platform (the composition root) builds a :class:`Machine` and hands it down; nothing in
the driver imports the platform. :class:`RmrrUnit` and :class:`AtsrUnit` are the registered
RMRR and ATSR structures with their resolved scopes (Xen's ``acpi_rmrr_unit`` and
``acpi_atsr_unit``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vtdwalk.acpi import dmar as _dmar
from vtdwalk.topology import Bdf, BdfLike, Device, Topology

if TYPE_CHECKING:
    from vtdwalk._core import PhysMem
    from vtdwalk.driver.iommu import Iommu, Scope

__all__ = ["AtsrUnit", "Machine", "RmrrUnit"]


@dataclass(frozen=True)
class RmrrUnit:
    """A registered RMRR: ``[base, end]`` inclusive, with its resolved scope devices."""

    rmrr: _dmar.Rmrr
    segment: int
    base: int
    end: int
    devices: tuple[Bdf, ...]

    def __contains__(self, bdf: object) -> bool:
        return bdf in self.devices


@dataclass(frozen=True)
class AtsrUnit:
    """A registered ATSR with its resolved scope (unparsed, empty, for ALL_PORTS)."""

    atsr: _dmar.Atsr
    segment: int
    all_ports: bool
    scope: Scope


@dataclass(frozen=True)
class Machine:
    """The machine as device assignment sees it: memory, PCI topology, units (in Xen's list
    order), the placement policy, and the look-ups of Xen's ``acpi_find_matched_*``."""

    mem: PhysMem
    topology: Topology
    iommus: Sequence[Iommu]
    policy: Literal["seed", "pre-seed"]
    #: ``acpi_find_matched_drhd_unit``: the unit whose scope covers the device, or None.
    iommu_for_device: Callable[[BdfLike], Iommu | None]
    #: ``acpi_find_matched_atsr_unit``: the device's ATSR, or None.
    atsr_for_device: Callable[[Device], _dmar.Atsr | None]
    #: Registered RMRRs (list order) naming the device in their scope.
    rmrrs_for_device: Callable[[BdfLike], list[RmrrUnit]]
    #: The NUMA node of a unit by its RHSA (None: no RHSA, or NUMA_NO_NODE).
    unit_node: Callable[[Iommu], int | None]
