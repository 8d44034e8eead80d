"""MedAlliance: the shared information platform of an integrated medical alliance (医联体)."""

__version__ = "0.1.0"
