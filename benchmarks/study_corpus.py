"""Build the study corpus for the budget ladder: ~40M tokens of real English technical prose, large
enough that the longest CPU study run (4,000 tiny steps of TST, s=6) reads no token twice.

The embedded Python-docs corpus (~2.7M tokens) is too small for that: a long superposition phase
would cycle through it several times, and repeated data removes the very advantage TST has (more
data per FLOP). The text is the documentation Debian ships, turned from HTML/POD into plain text:

    apt-get install -y --no-install-recommends rust-doc perl-doc postgresql-doc-15 openjdk-17-doc python-django-doc
    python benchmarks/study_corpus.py [--out_dir outputs/study-corpus]

It writes OUT_DIR/train.jsonl and OUT_DIR/validation.jsonl (one page per line, about 5% of the
pages held out by a stable hash of their path) and prints their sizes in tokens of the shipped
tokenizer. The text is rebuilt, never committed. (The Linux kernel documentation is kept out on
purpose: it is reserved for independent checks.)
"""

import argparse
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_PERCENT = 5
PACKAGES = ["rust-doc", "perl-doc", "postgresql-doc-15", "openjdk-17-doc", "python-django-doc"]
# (root, file pattern, sub-folders left out). rustdoc renders core/alloc items again under std, and
# src/ is the library source: both would add repeats, not new text.
SOURCES = [
    ("/usr/share/doc/rust-doc/html", "*.html", {"core", "alloc", "src", "implementors", "test", "proc_macro"}),
    ("/usr/share/doc/postgresql-doc-15/html", "*.html", set()),
    ("/usr/share/perl/5.36/pod", "*.pod", set()),
    ("/usr/share/doc/openjdk-17-jre-headless/api", "*.html", {"class-use", "index-files", "legal", "resources"}),
    ("/usr/share/doc/python-django-doc/html", "*.html", {"_modules", "_static", "_images", "_sources"}),
]


class _TextOfHTML(HTMLParser):
    """The visible text of a page: no scripts, styles, navigation, or sidebars."""

    SKIPPED = {"script", "style", "nav", "head", "noscript", "button"}

    def __init__(self):
        super().__init__()
        self.parts, self._skipping = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED or dict(attrs).get("class", "").startswith("sidebar"):
            self._skipping += 1
        elif tag in ("p", "div", "br", "li", "pre", "h1", "h2", "h3", "h4", "tr", "section"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if self._skipping and (tag in self.SKIPPED or tag in ("div", "section")):
            self._skipping -= 1

    def handle_data(self, data):
        if not self._skipping:
            self.parts.append(data)


def page_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        parser = _TextOfHTML()
        parser.feed(raw)
        raw = "".join(parser.parts)
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in raw.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def is_held_out(page: str) -> bool:
    return int(hashlib.sha1(page.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default="outputs/study-corpus", help="Where train/validation.jsonl go.")
    parser.add_argument("--min_chars", type=int, default=500, help="Pages with less text are dropped.")
    args = parser.parse_args(argv)
    splits, seen = {"train": [], "validation": []}, set()
    for root, pattern, left_out in SOURCES:
        if not Path(root).is_dir():
            raise SystemExit(f"{root} is missing; install the documentation first: apt-get install -y "
                             "--no-install-recommends " + " ".join(PACKAGES))
        for path in sorted(Path(root).rglob(pattern)):
            if left_out & set(path.relative_to(root).parts[:-1]):
                continue
            text = page_text(path)
            digest = hashlib.sha1(text.encode()).hexdigest()
            if len(text) < args.min_chars or digest in seen:  # stubs, redirects and duplicate pages
                continue
            seen.add(digest)
            splits["validation" if is_held_out(str(path)) else "train"].append({"source": str(path), "text": text})
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "tokenizer")
    sizes = {}
    for name, records in splits.items():
        with open(out / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        tokens = sum(len(ids) + 1 for ids in tokenizer([r["text"] for r in records])["input_ids"])
        sizes[name] = tokens
        print(f"{out / f'{name}.jsonl'}: {len(records):,} pages, {sum(len(r['text']) for r in records):,} "
              f"characters, {tokens:,} tokens")
    return sizes


if __name__ == "__main__":
    main()
