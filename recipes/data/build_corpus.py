"""Build the embedded corpus and tokenizer shipped in the repo (run once; outputs are committed).

Corpus: the reStructuredText sources of Python 3.11's documentation, as Debian ships them in the
package `python3.11-doc` (PSF license, see recipes/data/python-docs/LICENSE). One JSONL record per
page; about 5% of pages, chosen by a stable hash of their path, form the held-out split.
Tokenizer: a byte-level BPE trained on the training split only.

    apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb /tmp/pydoc
    python recipes/data/build_corpus.py /tmp/pydoc/usr/share/doc/python3.11/html/_sources
"""

import gzip
import hashlib
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

RECIPES = Path(__file__).resolve().parents[1]
CORPUS_DIR = RECIPES / "data" / "python-docs"
TOKENIZER_DIR = RECIPES / "tokenizer"
VOCAB_SIZE = 8192
HELD_OUT_PERCENT = 5
EOS = "<|endoftext|>"


def is_held_out(page: str) -> bool:
    return int(hashlib.sha1(page.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def write_splits(sources: Path) -> list[str]:
    splits = {"train": [], "validation": []}
    for path in sorted(sources.rglob("*.rst.txt")):
        page = str(path.relative_to(sources))
        text = path.read_text(encoding="utf-8").strip()
        if text:
            splits["validation" if is_held_out(page) else "train"].append({"source": page, "text": text})
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    for name, records in splits.items():
        # mtime=0 keeps the archive byte-identical across rebuilds.
        with gzip.GzipFile(CORPUS_DIR / f"{name}.jsonl.gz", "wb", mtime=0) as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
        print(f"{name}: {len(records)} pages, {sum(len(r['text']) for r in records):,} characters")
    return [r["text"] for r in splits["train"]]


def train_tokenizer(texts: list[str]) -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # No pad token: packed pre-training has no padding, and a pad id equal to EOS would make models
    # built from a config freeze the EOS embedding (nn.Embedding's padding_idx).
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, model_max_length=512)
    fast.save_pretrained(TOKENIZER_DIR)
    print(f"tokenizer: {fast.vocab_size} tokens -> {TOKENIZER_DIR}")


if __name__ == "__main__":
    train_tokenizer(write_splits(Path(sys.argv[1])))
