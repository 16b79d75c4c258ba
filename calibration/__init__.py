"""Calibration: deciding and applying the precision of a bundle's stage graphs."""
