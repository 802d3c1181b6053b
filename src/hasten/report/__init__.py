"""Renderings of a study: terminal tables and JSON."""
