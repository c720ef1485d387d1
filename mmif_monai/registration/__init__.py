"""Putting a functional volume on the anatomical grid: world-coordinate resampling, optional ITK registration."""

from .alignment import (
    REGISTRATION_KINDS,
    AlignmentReport,
    RegistrationSettings,
    align_volumes,
    check_overlap,
    register_volumes,
)

__all__ = [
    "REGISTRATION_KINDS",
    "AlignmentReport",
    "RegistrationSettings",
    "align_volumes",
    "check_overlap",
    "register_volumes",
]
