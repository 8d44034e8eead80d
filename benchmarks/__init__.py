"""Benchmarks of the MedAlliance platform; run them with ``python -m benchmarks.run``.

Each benchmark measures MedAlliance against a baseline in the same run and reports
the ratio, so that the figures say something about the code and less about the machine.
Results are appended to ``BENCHMARKS.md`` at the repository root.
"""
