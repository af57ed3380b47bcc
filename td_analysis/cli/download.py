"""``td-analysis download``: fetch and verify a data set."""

from __future__ import annotations

import argparse


def cmd_download(args: argparse.Namespace) -> int:
    from td_analysis.data import DATASETS, DataError, dataset_info, download_dataset, find_dataset

    # data.download_* remove a folder they created when the download fails, and their errors
    # never suggest running this very command again
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    for name in names:
        info = dataset_info(name)
        if not args.force:
            try:
                folder = find_dataset(name, args.data_dir, download=False)
                print(f"{info.title} already present in {folder}")
                continue
            except (FileNotFoundError, DataError):
                pass  # missing, or a stale archive: download_dataset fetches a fresh copy
        folder = download_dataset(name, args.data_dir, force=args.force)
        print(f"{info.title} ready in {folder}")
    return 0
