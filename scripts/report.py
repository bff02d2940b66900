"""Summarise a sweep folder again: `python scripts/report.py outputs/multiruns/<date_time>`."""

import argparse

from dlfoundations.reporting.summary import write_summary

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", help="a multirun folder (holds one folder per job)")
    print(write_summary(parser.parse_args().sweep_dir))
