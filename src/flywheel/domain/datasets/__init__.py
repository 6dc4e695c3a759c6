"""Chat and tool-calling dataset pipeline: records → clean records → splits → ICL → file rows.

Pure: no file or network I/O. :mod:`flywheel.services.datasets` streams logs in and writes
the files; see docs/datasets.md for the rules, reason codes and formats.
"""
