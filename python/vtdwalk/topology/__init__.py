"""The machine's topology: PCI devices and bridges, NUMA nodes, and the description loader."""

from vtdwalk.topology.pci import (
    MAX_NUMNODES,
    Bdf,
    BdfLike,
    Device,
    DeviceKind,
    Numa,
    NumaNode,
    Topology,
    load_description,
    sriov_vf_bdfs,
)

__all__ = [
    "MAX_NUMNODES",
    "Bdf",
    "BdfLike",
    "Device",
    "DeviceKind",
    "Numa",
    "NumaNode",
    "Topology",
    "load_description",
    "sriov_vf_bdfs",
]
