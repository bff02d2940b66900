"""Summarise a sweep folder again: `python scripts/report.py outputs/multiruns/<date_time>`."""

import argparse
import sys
from pathlib import Path

from dlfoundations.errors import UserError
from dlfoundations.reporting.summary import check_sweep_folder, write_summary

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (one folder per job)")
    sweep_dir = parser.parse_args().sweep_dir
    try:
        check_sweep_folder(sweep_dir)
        print(write_summary(sweep_dir))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
