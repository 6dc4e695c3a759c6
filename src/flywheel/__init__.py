"""Flywheel: turn production LLM traffic into datasets and find cheaper models for the same work."""

__version__ = "0.1.0"
