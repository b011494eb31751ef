"""A sweep's table and figures from MLflow, in the paper's layout.

    python -m analysis.summarize --sweep conv_reduction                     # the latest sweep of that name
    python -m analysis.summarize --parent-run-id <id> --out analysis/out    # or one parent run
    python -m analysis.summarize --list                                     # the sweeps in the store
    python -m analysis.summarize --sweep backbone_init --all-parents        # every multirun of that name together
    python -m analysis.summarize --paper-tables                             # benchmark evaluations as Tables 2-8

Writes <out>/<sweep>.md and .csv (one row per configuration; the paper's numbers beside ours for the paper preset,
or with --paper) and PNG figures (training curves; metric vs modality tokens; encoder x size heatmap).
"""

from __future__ import annotations

import argparse
import sys

from analysis.report import summarize
from analysis.runs import default_tracking_uri, list_sweeps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sweep", help="the sweep's name (sweep_name, e.g. conv_reduction); the latest is used")
    which.add_argument("--parent-run-id", help="the MLflow parent run of the multirun")
    which.add_argument("--list", action="store_true", help="list the sweeps in the store and exit")
    which.add_argument("--paper-tables", action="store_true",
                       help="src/eval.py's benchmark results as the paper's Tables 2-8, the paper's numbers beside")
    p.add_argument("--tracking-uri", default=None, help="default: sqlite:///$MODRWKV_ROOT/mlflow.db (or ./mlflow.db)")
    p.add_argument("--out", default="analysis/out", help="folder for the table and figures")
    p.add_argument("--all-parents", action="store_true",
                   help="with --sweep: every multirun of that name together (e.g. seeds run as separate multiruns)")
    p.add_argument("--paper", action=argparse.BooleanOptionalAction, default=None,
                   help="show the paper's numbers (default: only when the runs used preset=paper)")
    args = p.parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()
    try:
        if args.list:
            print(list_sweeps(uri).to_string(index=False))
            return 0
        if args.paper_tables:
            from analysis.bench_tables import paper_tables

            print(paper_tables(uri, args.out))
            return 0
        report = summarize(uri, args.out, sweep=args.sweep, parent_run_id=args.parent_run_id, with_paper=args.paper,
                           all_parents=args.all_parents)
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.markdown)
    for kind, path in report.files.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
