"""Weights and how they run: loading, precision, prepacking, runtimes (torch, OpenVINO), the model's
geometry, the tiny test model.

May import: ground modules. Nothing else of soundscape.
"""
