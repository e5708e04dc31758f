"""``python -m bench [--json] [--quick]``: measure and print the table."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from . import ble, coldstart, holder, links, mqtt, program, roundtrip
from .rows import Row


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table; ``spread`` is the ratio's ± in % within the run."""
    lines = [
        "| figure | massager-ctl | baseline | ratio | spread | baseline is |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        spread = "" if row.spread is None else f"±{row.spread:.1f} %"
        lines.append(
            f"| {row.name} | {row.value:.3g} {row.unit} | {row.baseline:.3g} {row.unit} "
            f"| {row.ratio:.2f} | {spread} | {row.baseline_name} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list of the rows")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = parser.parse_args()
    rows = roundtrip.measure(300 if args.quick else 3000)
    rows += links.measure(300 if args.quick else 3000)
    rows += ble.measure(300 if args.quick else 3000)
    rows += program.measure(1 if args.quick else 3)
    rows += mqtt.measure(300 if args.quick else 3000)
    rows += holder.measure(1 if args.quick else holder.ROUNDS,
                           20 if args.quick else holder.STOP_ROUNDS)  # fmt: skip
    rows += coldstart.measure(1 if args.quick else 21)
    if args.json:
        json.dump([row.as_dict() for row in rows], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(table(rows))
        print(f"\nPython {platform.python_version()} on {platform.machine()}, "
              f"{platform.system()}; ratios compare figures measured in this one run. "
              "Spread: the half-range of the ratio taken per round (or per block of "
              "samples), over its mid-range.")  # fmt: skip


if __name__ == "__main__":
    main()
