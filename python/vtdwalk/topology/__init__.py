"""The machine's topology: ``pci`` (functions, bridges, bus numbering, synthesis from a DMAR
table), ``numa`` (nodes and proximity domains) and ``loader`` (the description file)."""

from vtdwalk.topology.loader import load_description
from vtdwalk.topology.numa import MAX_NUMNODES, Numa, NumaNode
from vtdwalk.topology.pci import Bdf, BdfLike, Device, DeviceKind, Topology, sriov_vf_bdfs

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
