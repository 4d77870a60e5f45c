"""Push an existing TST output folder (model, tokenizer, model card, loss curve) to the Hub.

    python recipes/push.py OUTPUT_DIR REPO_ID [--revision main] [--private]

Checkpoint folders and training state stay local.
"""

import argparse

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import hub as transformers_hub

from hf_tst.hub import TRAINING_STATE_FILES


def push(output_dir: str, repo_id: str, revision: str | None = None, private: bool = False, token: str | None = None):
    client = transformers_hub.hf_api()
    repo_id = client.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    if revision:
        client.create_branch(repo_id=repo_id, branch=revision, exist_ok=True, token=token)
    return client.upload_folder(repo_id=repo_id, folder_path=output_dir, revision=revision, token=token,
                                commit_message="Upload TST model",
                                ignore_patterns=[*TRAINING_STATE_FILES, f"{PREFIX_CHECKPOINT_DIR}-*"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("repo_id")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing); default main")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    push(args.output_dir, args.repo_id, args.revision, args.private)


if __name__ == "__main__":
    main()
