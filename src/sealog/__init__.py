"""Sealog: the complete, searchable and provably untampered audit log of an organization."""

__version__ = "0.1.0"
