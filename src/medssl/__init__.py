"""medssl: label-efficient, calibrated classification of small medical images (MedMNIST)."""

__version__ = "0.1.0"
