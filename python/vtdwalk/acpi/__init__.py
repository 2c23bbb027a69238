"""ACPI: the DMAR table (DRHD, RMRR, ATSR, RHSA, ANDD, SATC), parsed, validated and built."""

from vtdwalk.acpi import dmar

__all__ = ["dmar"]
