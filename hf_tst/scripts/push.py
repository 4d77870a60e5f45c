"""Push an existing TST output folder (model, tokenizer, model card, loss curve) to the Hub.

    hf-tst push OUTPUT_DIR REPO_ID [--revision main] [--private]

Checkpoint folders and training state stay local.
"""

import argparse
import os

from ..errors import UsageError
from ..hub import push_output_dir
from ..parser import HelpFormatter


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("output_dir", help="The training run's output_dir (the saved model and its card).")
    parser.add_argument("repo_id", help="Hub repository to create or update, e.g. user/tiny-tst.")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if missing); default main.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None):
    args = make_parser(prog).parse_args(argv)
    if not os.path.isdir(args.output_dir):  # before the repository is created on the Hub
        raise UsageError(f"output_dir {args.output_dir}: no such folder; pass the output_dir of a training run.")
    commit = push_output_dir(args.output_dir, args.repo_id, args.revision, args.private)
    print(f"pushed {args.output_dir} ({args.revision or 'main'}): {commit.commit_url}")
    return commit
