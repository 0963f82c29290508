"""``fitnets report RUN_DIR...``: a Markdown table (mean ± std over seeds) and PNG figures from run folders."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="Markdown table (mean ± std over seeds) and PNG figures from run folders")
    p.add_argument("runs", nargs="+", help="run folders, or one `fitnets frontier` folder (its answer again, from "
                                           "the trials finished so far)")
    p.add_argument("--out", default="report", help="output folder (report.md and PNGs)")
    p.add_argument("--no-figures", action="store_true", help="write report.md only, no PNG figures")
    p.add_argument("--no-speed", action="store_true", help="skip the measured speed-up column")
    p.add_argument("--by-name", action="store_true",
                   help="one row per run name (its folder name without -seedN), e.g. for a search over one method")
    p.add_argument("--device", default="cpu", help="where the speed-up column is measured (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.tools.report import write_report

    if len(args.runs) == 1 and (Path(args.runs[0]) / "frontier.yaml").is_file():  # a `fitnets frontier` folder
        from fitnets.tools.frontier.engine import report

        print(report(Path(args.runs[0]), figure=not args.no_figures))
        print(f"\nwritten: {Path(args.runs[0]) / 'frontier.md'}, frontier.json")
        return 0

    path = write_report(args.runs, args.out, figures=not args.no_figures, speed=not args.no_speed, device=args.device,
                        by_name=args.by_name)
    print(path.read_text().split("\n![")[0].rstrip())
    print(f"\nwritten: {path}")
    return 0
