"""The pre-training job behind `hf-tst train` and `recipes/train.py`: text -> packed blocks -> model
-> `TSTTrainer` -> checkpoint, eval metrics, model card and trainer state in `output_dir`; and the
one-variant run that comparisons, sweeps and ladders repeat with a few fields changed."""

from dataclasses import replace

import datasets
from transformers import AutoTokenizer, set_seed

from .arguments import TRAINING_ARGUMENTS, DataArguments, ModelArguments, ScriptArguments
from .checks import check_row_length
from .config import TSTConfig
from .data_files import check_data_files, named_file_faults
from .modeling import check_positions, from_pretrained, load_model, with_lora
from .parser import TSTParser
from .text import as_blocks, load_text
from .trainer import TSTTrainer


def pretrain(model_args: ModelArguments, data_args: DataArguments, script_args: ScriptArguments,
             args: TSTConfig) -> dict:
    """Train, save the model, evaluate on the held-out blocks; returns the final eval metrics.

    `output_dir` then holds an ordinary checkpoint, `eval_results.json`, the model card (README.md)
    and `trainer_state.json` (the log history that comparisons read). `--resume_from_checkpoint last`
    resumes from the newest complete checkpoint there."""
    check_row_length(data_args.block_size, args, "block_size")
    local_files = [] if data_args.dataset_name else check_data_files(
        data_args.train_files, data_args.validation_files, data_args.text_column)
    set_seed(args.seed)
    tokenizer = from_pretrained(AutoTokenizer, "--tokenizer_name" if model_args.tokenizer_name else
                                "--model_name_or_path", model_args.tokenizer_name or model_args.model_name_or_path)
    with named_file_faults(local_files):  # a file 🤗 datasets fails on is named, with its line
        train_text, eval_text = load_text(data_args)
        with args.main_process_first(desc="tokenising and packing"):
            train = as_blocks(train_text, tokenizer, data_args.block_size, data_args.text_column, "train")
            held_out = as_blocks(eval_text, tokenizer, data_args.block_size, data_args.text_column, "validation")
        held_out = (datasets.Dataset.from_list(list(held_out.take(data_args.max_eval_blocks))) if data_args.streaming
                    else held_out.select(range(min(data_args.max_eval_blocks, len(held_out)))))
    model = with_lora(load_model(model_args, tokenizer), model_args)
    if data_args.streaming:  # TSTTrainer checks the rows of map-style data itself; a stream it cannot peek at
        check_positions(model, data_args.block_size)

    trainer = TSTTrainer(model=model, args=args, train_dataset=train, eval_dataset=held_out,
                         processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    trainer.create_model_card(dataset=data_args.dataset_name or data_args.train_files)
    trainer.save_state()
    if trainer.is_world_process_zero():
        print(f"final eval loss {metrics['eval_loss']:.4f} (next-token, {len(held_out)} held-out blocks of "
              f"{data_args.block_size}); checkpoint in {args.output_dir}")
        if script_args.closing_note:
            print(script_args.closing_note)
    return metrics


def train_variant(parser: TSTParser, argv: list[str], output_dir: str, **overrides) -> dict:
    """`pretrain` on `argv` plus `--field value` overrides, in its own `output_dir`: one run of a
    comparison, sweep or ladder. `parser` is the calling command's; its last dataclasses must be
    `TRAINING_ARGUMENTS` (the command's own come first and are ignored here). The config's `closing_note`
    speaks of the job it belongs to, not of this run, so a variant prints none: the calling command
    reports its own verdict."""
    if tuple(parser.dataclass_types[-len(TRAINING_ARGUMENTS):]) != TRAINING_ARGUMENTS:
        raise TypeError("train_variant needs a parser whose last dataclasses are hf_tst.arguments.TRAINING_ARGUMENTS.")
    flags = [item for key, value in overrides.items() for item in (f"--{key}", str(value))]
    model_args, data_args, script_args, args = parser.parse_args_and_config(
        [*argv, *flags, "--output_dir", output_dir])[-len(TRAINING_ARGUMENTS):]
    return pretrain(model_args, data_args, replace(script_args, closing_note=None), args)
