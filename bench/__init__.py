"""Benchmarks: each figure beside a bare baseline measured in the same run, as a ratio.

``python -m bench`` prints the table (Markdown, as docs/bench.md quotes it);
``python -m bench --json`` prints the same rows as a JSON list.
"""
