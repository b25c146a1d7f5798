"""Momentry media: a Django service that serves video by face track."""

__version__ = "0.1.0"
