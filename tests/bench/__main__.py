"""Run the benchmarks, print a table, write var/bench/results.json (see tests/bench/__init__.py)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

from tests.bench.common import Section, machine

# name -> module; each module has run(quick: bool) -> Section
SECTIONS = {
    "gate": "tests.bench.bench_gate",
    "face": "tests.bench.bench_face",
    "ingest": "tests.bench.bench_ingest",
    "sync": "tests.bench.bench_sync",
    "claim": "tests.bench.bench_claim",
    "metrics": "tests.bench.bench_metrics",
    "booking": "tests.bench.bench_booking",
    "history": "tests.bench.bench_history",
    "headoffice": "tests.bench.bench_headoffice",
    "replication": "tests.bench.bench_replication",
}
ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every figure, small, in under two minutes")
    parser.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "results.json"))
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    results: dict[str, object] = {"machine": machine(), "quick": args.quick}
    sections: list[Section] = []
    skipped: list[str] = []
    started = time.monotonic()
    for name in wanted:
        t0 = time.monotonic()
        print(f"== {name} ...", flush=True)
        if importlib.util.find_spec(SECTIONS[name]) is None:
            # A section another issue still has to write (claim): say so, and do not count it as broken.
            print(f"   {SECTIONS[name]} does not exist yet: skipped", flush=True)
            skipped.append(name)
            continue
        try:
            section = importlib.import_module(SECTIONS[name]).run(quick=args.quick)
        except Exception as exc:  # one broken section must not hide the others' figures
            traceback.print_exc()
            section = Section(name, error=f"{type(exc).__name__}: {exc}")
        section.figures[f"{name}_seconds"] = round(time.monotonic() - t0, 1)
        sections.append(section)
        results.update(section.figures)
    results["total_seconds"] = round(time.monotonic() - started, 1)

    missed = report(sections)
    results["bars_missed"] = missed
    results["errors"] = [f"{s.name}: {s.error}" for s in sections if s.error]
    results["skipped"] = skipped
    if skipped:
        print(f"  skipped (no module yet): {', '.join(skipped)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {out}")
    return 1 if results["errors"] else 0


def report(sections: list[Section]) -> list[str]:
    missed: list[str] = []
    print(f"\n{'figure':36s} {'value':>14s}   bar")
    for section in sections:
        bars = {b.key: b for b in section.bars}
        for key, value in section.figures.items():
            bar = bars.get(key)
            text = f"{value:14.3f}" if isinstance(value, float) else f"{value!s:>14s}"
            verdict = ""
            if bar is not None and isinstance(value, int | float):
                ok = bar.met(value)
                verdict = f"{'>=' if bar.at_least else '<='} {bar.limit:g} {'ok' if ok else 'MISSED'} {bar.note}"
                if not ok:
                    missed.append(key)
            print(f"{key:36s} {text}   {verdict}")
        for note in section.notes:
            print(f"  note: {note}")
        if section.error:
            print(f"  ERROR in {section.name}: {section.error}")
    return missed


if __name__ == "__main__":
    sys.exit(main())
