"""Sharded-head benchmark: peak step memory of TST steps with the fused LM head against the model's own
logits (`tst_fused_lm_head` True vs False), two processes under each launch config, on CPU (gloo).

Each variant is its own `accelerate launch` (a process's peak resident set only grows), on the same
model, data and steps; a step's memory is the peak allocated from the previous step's end to its own
above what was allocated then (`measure.StepMeter`), the largest over each phase's steps after its
first, and over both processes.

    python benchmarks/sharded_head.py [--configs zero3,ddp] [--vocab_size 65536] [--block_size 256]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from measure import StepMeter, configure_cpu_allocator, markdown_table, mib, publish
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.trainer_callback import PrinterCallback

from hf_tst import TSTConfig, TSTTrainer

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="zero3,ddp", help="launch configs of recipes/accelerate, comma-separated")
    parser.add_argument("--vocab_size", type=int, default=65536)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--block_size", type=int, default=256, help="L, tokens per row of a plain step")
    parser.add_argument("--batch_size", type=int, default=2, help="rows per device per step")
    parser.add_argument("--bag_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="steps per run, half of them in superposition")
    parser.add_argument("--fused", choices=("true", "false"), help="(internal) run one variant as a launched worker")
    parser.add_argument("--output", help="also write the table (markdown) to this file")
    return parser.parse_args(argv)


def worker(args) -> None:
    """One variant, in each launched process; prints this process's peaks."""
    configure_cpu_allocator()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                                         intermediate_size=2 * args.hidden_size, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    rows = args.steps * args.batch_size * args.bag_size * 2 + 16
    ids = torch.randint(0, args.vocab_size, (rows, args.block_size), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row.tolist()} for row in ids]
    config = TSTConfig(output_dir=tempfile.mkdtemp(), max_steps=args.steps, tst_ratio=0.5, tst_bag_size=args.bag_size,
                       per_device_train_batch_size=args.batch_size, tst_fused_lm_head=args.fused == "true",
                       use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                       dataloader_pin_memory=False)
    meter = StepMeter(torch.device("cpu"), warmup=0)
    trainer = TSTTrainer(model=model, args=config, train_dataset=data, callbacks=[meter])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    used = trainer._fused_head is not None and trainer._fused_head[1] is not None
    switch, peaks = config.superposition_steps, {}
    for step, peak in zip(meter.steps, meter.peaks, strict=True):
        if step != switch + 1:  # the first recovery step also builds that phase's state
            phase = "superposition" if step <= switch else "recovery"
            peaks[phase] = max(peaks.get(phase, 0), peak)
    print("RESULT " + json.dumps({"rank": trainer.args.process_index, "fused_head_used": used, **peaks}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # DeepSpeed's CPU communication op may abort in interpreter teardown after a good run


def launch(args, launch_config: str, fused: bool) -> list[dict]:
    script = [os.path.abspath(__file__), "--vocab_size", str(args.vocab_size), "--hidden_size", str(args.hidden_size),
              "--block_size", str(args.block_size), "--batch_size", str(args.batch_size), "--bag_size",
              str(args.bag_size), "--steps", str(args.steps), "--fused", str(fused).lower()]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               os.path.join(HERE, "..", "recipes", "accelerate", f"{launch_config}.yaml"), "--num_processes", "2",
               "--mixed_precision", "no", "--dynamo_backend", "no", *script]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "PYTHONPATH": HERE}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{launch_config}, fused={fused}: {result.stderr[-3000:]}")
    return [json.loads(line.removeprefix("RESULT ")) for line in result.stdout.splitlines()
            if line.startswith("RESULT ")]


def main():
    args = parse_args()
    if args.fused is not None:
        return worker(args)
    rows = []
    for launch_config in args.configs.split(","):
        runs = {fused: launch(args, launch_config, fused) for fused in (True, False)}
        assert all(run["fused_head_used"] for run in runs[True]), f"{launch_config}: the fused head was not used"
        for phase in ("superposition", "recovery"):
            fused, logits = (max(run[phase] for run in runs[f]) for f in (True, False))
            rows.append([launch_config, phase, mib(fused), mib(logits), f"{fused / logits:.2f}"])
    setting = (f"Two CPU processes (gloo), float32, tiny Llama (hidden {args.hidden_size}, 2 layers), "
               f"V={args.vocab_size:,}, L={args.block_size}, {args.batch_size} rows per process, s={args.bag_size}; "
               "peak step memory of the larger process.")
    header = ["launch config", "phase", "fused head", "model's logits", "fused ÷ logits"]
    publish(f"{setting}\n\n{markdown_table(header, rows)}", args.output)


if __name__ == "__main__":
    main()
