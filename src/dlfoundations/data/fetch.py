"""`python -m dlfoundations.data.fetch`: find (or download) Fashion-MNIST and verify it.

Uncompressed copies of ``.gz`` files are kept in ``<data-dir>/FashionMNIST/raw/``.

Exit status 0 when the four files are found and verified, 1 with the way to get them if not.
"""

from __future__ import annotations

import argparse
import sys

from dlfoundations.data import raw_files
from dlfoundations.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="the DataModule's data_dir")
    parser.add_argument("--no-download", action="store_true", help="never try torchvision")
    args = parser.parse_args(argv)
    try:
        paths = raw_files.find_files(args.data_dir, raw_files.SYSTEM_DIRS, not args.no_download)
        for name, path in paths.items():
            raw_files.verified_bytes(name, path)
        copies = raw_files.keep_uncompressed(paths, args.data_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST verified in {next(iter(paths.values())).parent}")
    if copies:
        print(f"uncompressed copies written to {copies[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
