"""Summarise a sweep folder again: `python scripts/report.py outputs/multiruns/<date_time>`."""

import argparse
import sys
from pathlib import Path

from dlfoundations.errors import UserError
from dlfoundations.reporting.jobs import find_jobs
from dlfoundations.reporting.summary import check_sweep_folder, warning_lines, write_summary
from dlfoundations.run.console import write_out

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (one folder per job)")
    sweep_dir = parser.parse_args().sweep_dir
    try:
        check_sweep_folder(sweep_dir)
        jobs = find_jobs(sweep_dir)
        write_out(write_summary(sweep_dir, jobs))
        for line in warning_lines(jobs):  # the other jobs are summarised; these are named
            write_out(line, error=True)
    except UserError as err:
        write_out(f"error: {err}", error=True)
        sys.exit(2)
