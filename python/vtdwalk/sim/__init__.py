"""``vtdwalk simulate``: a whole machine doing DMA, end to end.

The run: build a platform (the embedded 2-socket default, or a DMAR table and topology given by
the user), create domains, assign devices of every socket, map DMA buffers (scattered 4 KiB
pages, 2 MiB and 1 GiB superpages, a read-only ring), drive a DMA workload (random and
sequential IOVA streams from every device, interleaved, plus a few accesses that must fault)
through the units' batch translation, and report: units and devices, translations per second,
IOTLB hit rate, faults by reason, table pages per node, and the same scenario built under the
``seed`` and ``pre-seed`` placement policies side by side.

Everything random comes from one ``numpy.random.Generator`` seeded by ``--random-seed``, so a
run is reproducible; only the timings vary. The workload is generated and translated in chunks
(:func:`vtdwalk.sim.workload.chunks`), so memory does not grow with the number of requests.
"""

from __future__ import annotations

from vtdwalk.sim.dump import dump, render_dump
from vtdwalk.sim.plot import check_plot_path, hit_rate_sweep, plot, supported_formats
from vtdwalk.sim.progress import Phases
from vtdwalk.sim.report import FAULT_NAMES, render_table, render_text, run
from vtdwalk.sim.scenario import (
    DEFAULT_DMAR,
    DEFAULT_TOPOLOGY,
    SimConfig,
    build_platform,
    default_dmar_bytes,
    plan_scenario,
)
from vtdwalk.sim.workload import chunks, drive, make_workload

__all__ = [
    "DEFAULT_DMAR",
    "DEFAULT_TOPOLOGY",
    "FAULT_NAMES",
    "Phases",
    "SimConfig",
    "build_platform",
    "check_plot_path",
    "chunks",
    "default_dmar_bytes",
    "drive",
    "dump",
    "hit_rate_sweep",
    "make_workload",
    "plan_scenario",
    "plot",
    "render_dump",
    "render_table",
    "render_text",
    "run",
    "supported_formats",
]
