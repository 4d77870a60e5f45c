"""Step benchmark: data throughput and memory of TST's superposition steps against a plain
training step of the same model and per-step shape, each run by a real `Trainer` loop.

Variants, all on the same model initialisation and the same packed data (B rows of L tokens):
  - baseline:       plain `transformers.Trainer`, the model's own loss on materialised logits;
  - recovery:       `TSTTrainer` plain steps (tst_ratio=0): the fused LM head + cross-entropy;
  - superposition:  `TSTTrainer` superposition steps, sequence folding: B rows of s*L tokens;
  - batch fold:     `TSTTrainer` superposition steps, batch folding: s*B rows of L tokens.
A step's time runs from one optimizer step's end to the next, so data loading is included (the
time before the step begins, waiting for its batch, is also shown); its memory is the peak it
allocates above what was allocated when it began. Rounds alternate the
variants and the medians are reported. Model FLOPs utilisation (on a GPU whose peak
`hf_tst.throughput` knows) counts model FLOPs as the training logs do (`hf_tst/throughput.py`).

    python benchmarks/step.py --model tiny          # recipes/configs/tiny.yaml's shape, CPU
    python benchmarks/step.py --model 50m           # a 54M-parameter Llama, CPU
    python benchmarks/step.py --model smollm2-135m --device cuda --batch_size 16 --block_size 2048
    python benchmarks/step.py --model 50m --streamed --workers 4   # the embedded corpus, streamed in 4 shards

With `--streamed` every variant reads the embedded corpus as a 🤗 stream of 4 JSON lines shards,
tokenised (the shipped tokenizer) and packed on the fly, instead of random packed blocks: the data
wait then includes reading, tokenising and packing, which `--workers` moves out of the training process.
"""

import argparse
import copy
import statistics
import tempfile
import warnings

import datasets
import torch
from measure import StepMeter, configure_cpu_allocator, markdown_table, mib, publish
from stream_workers import shard_files
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from hf_tst import TSTConfig, TSTTrainer
from hf_tst.text import pack_text_dataset
from hf_tst.throughput import ModelFlops, peak_tflops

MODELS = {  # name: (config folder, overrides)
    "tiny": ("recipes/models/tiny-llama", {}),
    "50m": ("recipes/models/tiny-llama", dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6,
                                              num_attention_heads=8, num_key_value_heads=8, vocab_size=32768)),
    "smollm2-135m": ("recipes/models/smollm2-135m-untied", {}),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default on CUDA)")
    parser.add_argument("--batch_size", type=int, default=16, help="B, rows per device per step")
    parser.add_argument("--block_size", type=int, default=128, help="L, tokens per row of a plain step")
    parser.add_argument("--bag_size", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6, help="measured steps per variant and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="dataloader_num_workers (CPU 0, CUDA 4)")
    parser.add_argument("--streamed", action="store_true", help="stream the embedded corpus, packed on the fly")
    parser.add_argument("--output", help="also write the table (markdown) to this file")
    return parser.parse_args()


def streamed_blocks(folder: str, block_size: int):
    """The embedded corpus as a 🤗 stream of packed blocks (4 shards, tokenised and packed as it is read), and
    the same with `labels` for a plain `Trainer`."""
    blocks = pack_text_dataset(datasets.load_dataset("json", data_files=shard_files(folder), split="train",
                                                     streaming=True),
                               AutoTokenizer.from_pretrained("recipes/tokenizer"), block_size)
    return blocks, blocks.map(lambda block: {"labels": block["input_ids"]})


class PackedBlocks(torch.utils.data.Dataset):
    """Random packed blocks whose items hold Python lists, as a `datasets.Dataset` returns them."""

    def __init__(self, ids: torch.Tensor, labelled: bool = False):
        self.ids, self.labelled = ids, labelled

    @classmethod
    def random(cls, num_blocks: int, block_size: int, vocab_size: int) -> "PackedBlocks":
        return cls(torch.randint(0, vocab_size, (num_blocks, block_size), generator=torch.Generator().manual_seed(0)))

    def with_labels(self) -> "PackedBlocks":
        """The same blocks, with `labels` for a plain `Trainer` (the model shifts them)."""
        return PackedBlocks(self.ids, labelled=True)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        ids = self.ids[index].tolist()
        return {"input_ids": ids, "labels": ids} if self.labelled else {"input_ids": ids}


def run_variant(name, model, data, labelled, args, device, bf16) -> StepMeter:
    """One variant's steps; `data` feeds TSTTrainer, `labelled` (the same blocks with labels) the plain Trainer."""
    steps = args.warmup + args.steps + 1
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, max_steps=steps,
                  learning_rate=1e-4, logging_strategy="no", save_strategy="no", report_to="none",
                  use_cpu=device.type == "cpu", bf16=bf16, disable_tqdm=True, dataloader_pin_memory=False, seed=0,
                  dataloader_num_workers=args.workers)
    meter = StepMeter(device, args.warmup)
    if name == "baseline":
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=labelled, callbacks=[meter])
    else:
        tst = dict(tst_ratio=0.0) if name == "recovery" else dict(
            tst_ratio=1.0, tst_bag_size=args.bag_size, tst_fold="batch" if name == "batch fold" else "sequence")
        trainer = TSTTrainer(model=model, args=TSTConfig(**common, **tst), train_dataset=data, callbacks=[meter])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return meter


def main():
    args = parse_args()
    device = torch.device(args.device)
    if args.workers is None:
        args.workers = 4 if device.type == "cuda" else 0
    bf16 = args.bf16 or device.type == "cuda"
    if device.type == "cpu":
        configure_cpu_allocator()
    warnings.filterwarnings("ignore")
    folder, overrides = MODELS[args.model]
    config = AutoConfig.from_pretrained(folder, **overrides)
    torch.manual_seed(0)
    initial = AutoModelForCausalLM.from_config(config)
    s, B, L = args.bag_size, args.batch_size, args.block_size
    steps = args.warmup + args.steps + 1
    if args.streamed:
        data, labelled = streamed_blocks(tempfile.mkdtemp(), L)
    else:
        data = PackedBlocks.random(steps * B * s + B, L, config.vocab_size)
        labelled = data.with_labels()
    variants = ["baseline", "recovery", "superposition", "batch fold"]
    meters = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            meters[name].append(run_variant(name, copy.deepcopy(initial), data, labelled, args, device, bf16))
            print(f"{name}: {statistics.median(meters[name][-1].seconds) * 1000:.1f} ms/step", flush=True)
    seconds = {n: statistics.median([t for m in meters[n] for t in m.seconds]) for n in variants}
    data_seconds = {n: statistics.median([t for m in meters[n] for t in m.data_seconds]) for n in variants}
    peaks = {n: max(p for m in meters[n] for p in m.peaks) for n in variants}
    data_tokens = {"baseline": B * L, "recovery": B * L, "superposition": s * B * L, "batch fold": s * B * L}
    shapes = {"baseline": (B, L), "recovery": (B, L), "superposition": (B, L), "batch fold": (s * B, L // s)}
    peak, model_flops = peak_tflops(device), ModelFlops(initial)
    throughput = {n: data_tokens[n] / seconds[n] for n in variants}
    rows = []
    for n in variants:
        ratio = throughput[n] / throughput["baseline"]
        folded = data_tokens[n] // data_tokens["baseline"]  # s for superposition steps, 1 for plain ones
        row = [n, f"{seconds[n] * 1000:,.1f}", f"{data_seconds[n] * 1000:,.1f}", f"{data_tokens[n]:,}",
               f"{throughput[n]:,.0f}", f"{ratio:.2f} ({ratio / folded:.2f}×s)" if folded > 1 else f"{ratio:.2f}",
               mib(peaks[n]), f"{peaks[n] / peaks['baseline']:.2f}"]
        if peak:
            row.append(f"{model_flops(*shapes[n]) / seconds[n] / 1e12 / peak:.1%}")
        rows.append(row)
    header = ["step", "ms/step", "of which data wait", "data tokens/step", "data tokens/s", "throughput ÷ baseline",
              "peak step memory", "memory ÷ baseline"] + (["MFU"] if peak else [])
    parameters = sum(p.numel() for p in initial.parameters())
    setting = (f"{args.model} ({parameters / 1e6:.1f}M parameters, V={config.vocab_size}), {device.type}, "
               f"{'bf16 autocast' if bf16 else 'float32'}, B={B}, L={L}, s={s}, {args.workers} dataloader "
               f"workers, {'the embedded corpus streamed in 4 shards' if args.streamed else 'random blocks'}. "
               f"Superposition ÷ recovery throughput: "
               f"{throughput['superposition'] / throughput['recovery'] / s:.2f}×s. A batch-folding step takes "
               f"{seconds['batch fold'] / seconds['superposition']:.2f}× the time of a sequence-folding step.")
    report = f"{setting}\n\n{markdown_table(header, rows)}"
    publish(report, args.output)


if __name__ == "__main__":
    main()
