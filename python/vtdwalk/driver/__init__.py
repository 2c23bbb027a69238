"""The driver's bookkeeping: the remapping units, domains and device assignment.

``iommu`` holds one unit's state (root table, DID allocator, capabilities), ``domain`` one
domain's page table and attached devices, ``assign`` the device-to-domain assignment with its
RMRR identity maps and alias groups.
"""
