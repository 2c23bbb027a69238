"""One severity per finding code, for every layer that reports on firmware.

``vtdwalk dmar`` (:meth:`DmarTable.validate`), ``vtdwalk platform`` (:attr:`Platform.report`)
and ``vtdwalk simulate`` all take a finding's severity from :data:`SEVERITY`, so a code reads
the same everywhere. The levels, most severe first:

``fatal``
    Xen refuses the table or the unit (VT-d disabled, or the unit ignored). The platform
    works around it (the unit is skipped, the duplicate kept) and ``strict=True`` raises.
``error``
    The table is malformed (checksum, signature, bytes that form no structure) but Xen would
    still use what it decodes.
``warning``
    Firmware is odd; the platform copes as Xen does.
``info``
    Worth knowing; nothing is wrong.

The command line exits 1 when the input has a finding of severity ``fatal`` or ``error``.

Two codes depend on the segment: a second include-all DRHD (``duplicate-include-all``) or
ALL_PORTS ATSR (``duplicate-all-ports``) is fatal to Xen on segment 0 only; elsewhere it is a
warning (:func:`severity_of` with the segment).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["EXIT_ERROR_SEVERITIES", "SEVERITY", "SEVERITY_LEVELS", "Severity", "severity_of"]

Severity = Literal["fatal", "error", "warning", "info"]

#: The levels, most severe first.
SEVERITY_LEVELS: tuple[Severity, ...] = ("fatal", "error", "warning", "info")

#: Severities that make the command line exit 1 ("errors found in the input").
EXIT_ERROR_SEVERITIES: frozenset[str] = frozenset({"fatal", "error"})

#: Codes whose severity is ``fatal`` on segment 0 and ``warning`` on any other segment.
_FATAL_ON_SEGMENT_0 = frozenset({"duplicate-include-all", "duplicate-all-ports"})

#: Every finding code and its severity.
SEVERITY: dict[str, Severity] = {
    # Xen refuses the table or the unit.
    "haw-zero": "fatal",
    "structure-too-short": "fatal",
    "scope-too-short": "fatal",
    "drhd-address-invalid": "fatal",
    "rmrr-base-above-limit": "fatal",
    "rmrr-overlap": "fatal",
    "too-many-units": "fatal",
    "duplicate-include-all": "fatal",  # on segment 0; see severity_of
    "duplicate-all-ports": "fatal",  # on segment 0; see severity_of
    # Malformed bytes.
    "bad-signature": "error",
    "bad-checksum": "error",
    "length-mismatch": "error",
    "unparsed-bytes": "error",
    "scope-overrun": "error",
    "scope-truncated": "error",
    "structure-length": "error",
    "structure-overrun": "error",
    "structure-truncated": "error",
    # Odd firmware, worked around.
    "signature-zapped": "warning",
    "trailing-data": "warning",
    "reserved-flags": "warning",
    "x2apic-opt-out-without-intremap": "warning",
    "unknown-structure": "warning",
    "structure-order": "warning",
    "scope-odd-bytes": "warning",
    "scope-odd-length": "warning",
    "unknown-scope-type": "warning",
    "unexpected-scope-type": "warning",
    "multi-level-path": "warning",
    "namespace-no-andd": "warning",
    "drhd-address-misaligned": "warning",
    "duplicate-drhd-address": "warning",
    "include-all-not-last": "warning",
    "rmrr-misaligned": "warning",
    "rmrr-base-zero": "warning",
    "rmrr-no-devices": "warning",
    "all-ports-with-scopes": "warning",
    "rhsa-no-drhd": "warning",
    "scope-device-missing": "warning",
    "rmrr-devices-missing": "warning",
    "duplicate-rhsa": "warning",
    "rhsa-pxm-unknown": "warning",
    "device-no-unit": "warning",
    "ioapic-no-unit": "warning",
    "hpet-no-unit": "warning",
    # Worth knowing.
    "rmrr-large": "info",
    "unit-no-rhsa": "info",
}


def severity_of(code: str, segment: int = 0) -> Severity:
    """The severity of finding ``code`` (on PCI ``segment``, for the two codes that depend on
    it). An unknown code is a programming error: KeyError."""
    if code in _FATAL_ON_SEGMENT_0 and segment != 0:
        return "warning"
    return SEVERITY[code]
