"""virtio-iommu feature bits (virtio spec 5.13.3) and their negotiation.

The device *offers* a set of feature bits; the driver accepts a subset; the device accepts the
driver's set at FEATURES_OK only if every bit was offered. The nesting drafts put ATTACH_TABLE
at bit 5, 6 or 7 and collide with the bits below, so :attr:`Feature.ATTACH_TABLE` is a bit of
this model only (bit 32): its position on the wire is the device profile's ``table_bit``
(:func:`to_wire`, :func:`from_wire`; the ``rfc2021`` profile puts it at bit 6, where the Jan 2021
RFC has it, and then BYPASS_CONFIG cannot be offered).
"""

from __future__ import annotations

from enum import IntFlag

from .rules import refusal

__all__ = ["ALL_FEATURES", "QEMU_OFFERED", "Feature", "from_wire", "negotiate", "to_wire",
           "validate_offer"]


class Feature(IntFlag):
    """``VIRTIO_IOMMU_F_*`` as bit masks (bit number in the comment)."""

    INPUT_RANGE = 1 << 0  #: ``input_range`` in the configuration space is valid
    DOMAIN_RANGE = 1 << 1  #: ``domain_range`` is valid
    MAP_UNMAP = 1 << 2  #: MAP and UNMAP requests are available
    BYPASS = 1 << 3  #: legacy: unattached endpoints bypass the IOMMU (superseded by bit 6)
    PROBE = 1 << 4  #: PROBE requests are available; ``probe_size`` is valid
    MMIO = 1 << 5  #: the MAP flag MMIO is available
    BYPASS_CONFIG = 1 << 6  #: the ``bypass`` configuration field and ATTACH flag BYPASS
    #: the nesting draft's ATTACH_TABLE and INVALIDATE requests (no wire bit of its own: see
    #: the module docstring)
    ATTACH_TABLE = 1 << 32


#: Every feature bit of the specification.
ALL_FEATURES = Feature(0x7F)

#: What QEMU's device offers (it never offers the legacy BYPASS bit).
QEMU_OFFERED = (Feature.INPUT_RANGE | Feature.DOMAIN_RANGE | Feature.MAP_UNMAP | Feature.MMIO
                | Feature.PROBE | Feature.BYPASS_CONFIG)


def to_wire(features: int, table_bit: int | None) -> int:
    """The feature bits as the device presents them: ATTACH_TABLE at ``table_bit``."""
    wire = features & ~int(Feature.ATTACH_TABLE)
    if features & Feature.ATTACH_TABLE and table_bit is not None:
        wire |= 1 << table_bit
    return wire


def from_wire(bits: int, table_bit: int | None) -> int:
    """The model's feature set of wire ``bits`` (bit ``table_bit`` is ATTACH_TABLE)."""
    if table_bit is None or not bits >> table_bit & 1:
        return bits
    return (bits & ~(1 << table_bit)) | int(Feature.ATTACH_TABLE)


def validate_offer(offered: int, *, forbid_both_bypass: bool,
                   table_bit: int | None = None) -> Feature:
    """The offered set as a :class:`Feature`; EINVAL for unknown bits (ATTACH_TABLE without a
    ``table_bit``, or together with the feature whose bit it takes), and for BYPASS together
    with BYPASS_CONFIG when ``forbid_both_bypass`` (the spec: devices SHOULD NOT offer both)."""
    known = int(ALL_FEATURES) | (int(Feature.ATTACH_TABLE) if table_bit is not None else 0)
    if offered & ~known or offered < 0:
        raise refusal("virtio.device.features", bits=f"{offered:#x}")
    if table_bit is not None and offered & Feature.ATTACH_TABLE and offered >> table_bit & 1:
        raise refusal("virtio.device.table_bit", bit=table_bit,
                      name=Feature(1 << table_bit).name)
    feats = Feature(offered)
    both = Feature.BYPASS | Feature.BYPASS_CONFIG
    if forbid_both_bypass and feats & both == both:
        raise refusal("virtio.device.both_bypass")
    return feats


def negotiate(offered: Feature, driver_features: int) -> Feature:
    """The negotiated set: the driver's accepted bits, refused (EINVAL, FEATURES_OK not set) if
    the driver accepts a bit the device did not offer."""
    if driver_features < 0 or driver_features & ~int(offered):
        extra = driver_features & ~int(offered) if driver_features >= 0 else driver_features
        raise refusal("virtio.features.not_offered", bits=f"{extra:#x}",
                      offered=f"{int(offered):#x}")
    return Feature(driver_features)
