"""The synthetic demo alliance."""
