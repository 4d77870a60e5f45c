"""Pre-train a causal LM with Token-Superposition Training.

    accelerate launch recipes/train.py --config recipes/configs/tiny.yaml [--any_field value ...]

Offline default: a tiny Llama built from `recipes/models/tiny-llama`, the shipped tokenizer and the
embedded Python-docs corpus. Online: `--model_name_or_path` / `--model_config` / `--tokenizer_name`
take Hub ids, `--dataset_name` a Hub dataset (add `--streaming true` to stream it).
`--resume_from_checkpoint last` resumes from the newest complete checkpoint in `--output_dir`.
"""

from dataclasses import dataclass, field

import datasets
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, set_seed

from hf_tst import TSTConfig, TSTTrainer
from hf_tst.cli import parse_config
from hf_tst.data import pack_text_dataset


@dataclass
class ModelArguments:
    model_config: str | None = field(
        default=None, metadata={"help": "Config (local folder or Hub id) of a model to train from scratch."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated config overrides, e.g. 'hidden_size=256,num_hidden_layers=8'."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained model (local folder or Hub id) to continue pre-training instead."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank for parameter-efficient continued pre-training on "
                                                     "all linear layers; 0 trains every parameter."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    lora_train_embeddings: bool = field(
        default=False, metadata={"help": "With LoRA, also fully train the input embeddings and the LM head."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer (local folder or Hub id); defaults to the model's."})


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id, or comma-separated ids to mix; overrides the local files."})
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of the Hub dataset (comma-separated, one per dataset)."})
    dataset_probabilities: str | None = field(
        default=None, metadata={"help": "Comma-separated sampling probabilities of mixed datasets (default: equal)."})
    train_files: str | None = field(default=None, metadata={"help": "Local JSON lines file(s) of training text."})
    validation_files: str | None = field(default=None, metadata={"help": "Local JSON lines file(s) of held-out text."})
    validation_split: str = field(default="validation", metadata={"help": "Held-out split of the Hub dataset."})
    held_out_documents: int = field(
        default=0, metadata={"help": "Hold out the first N training documents for evaluation instead of reading "
                                     "validation_split (for datasets with a train split only)."})
    text_column: str = field(default="text", metadata={"help": "Column holding the raw text."})
    block_size: int = field(default=128, metadata={"help": "Model sequence length L: tokens per packed block."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it."})
    max_eval_blocks: int = field(default=256, metadata={"help": "Held-out blocks used for evaluation."})


@dataclass
class ScriptArguments:
    closing_note: str | None = field(
        default=None, metadata={"help": "A line printed after the final eval loss: what is known about this setting "
                                        "(the tiny config says what the budget-ladder study found at its scale)."})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, ScriptArguments, TSTConfig)


def load_text(data: DataArguments) -> tuple:
    """(train, held-out) text datasets: local JSON lines, or one or more Hub datasets, mixed."""
    if not data.dataset_name:
        if not (data.train_files and data.validation_files):
            raise ValueError("Pass --dataset_name, or both --train_files and --validation_files.")
        raw = datasets.load_dataset("json", data_files={"train": data.train_files,
                                                        "validation": data.validation_files}, streaming=data.streaming)
        return raw["train"], raw["validation"]
    names = data.dataset_name.split(",")
    configs = (data.dataset_config_name or "").split(",") + [""] * len(names)

    def mixed(split: str):
        parts = [datasets.load_dataset(name, config or None, split=split, streaming=data.streaming)
                 .select_columns([data.text_column]) for name, config in zip(names, configs, strict=False)]
        if len(parts) == 1:
            return parts[0]
        probabilities = data.dataset_probabilities and [float(p) for p in data.dataset_probabilities.split(",")]
        return datasets.interleave_datasets(parts, probabilities=probabilities, seed=0,
                                            stopping_strategy="all_exhausted")

    if data.held_out_documents:
        train = mixed("train")
        return train.skip(data.held_out_documents), train.take(data.held_out_documents)
    return mixed("train"), mixed(data.validation_split)


def load_model(model_args: ModelArguments, tokenizer):
    if model_args.model_name_or_path:
        return AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path)
    if not model_args.model_config:
        raise ValueError("Pass --model_config (to train from scratch) or --model_name_or_path.")
    config = AutoConfig.from_pretrained(model_args.model_config)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
    # A model trained from scratch takes its vocabulary and special tokens from the tokenizer.
    config.vocab_size = len(tokenizer)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = (
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config)


def with_lora(model, model_args: ModelArguments):
    """Wrap `model` in a LoRA adapter when `--lora_r` is set (needs `pip install peft`)."""
    if model_args.lora_r <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    embeddings = [model.get_input_embeddings(), model.get_output_embeddings()]
    names = [name for name, module in model.named_modules() if any(module is e for e in embeddings)]
    return get_peft_model(model, LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, target_modules="all-linear",
        modules_to_save=[name.rsplit(".", 1)[-1] for name in names] if model_args.lora_train_embeddings else None))


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, script_args, args = parse_config(ARGUMENT_CLASSES, argv)
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    train_text, eval_text = load_text(data_args)
    with args.main_process_first(desc="tokenising and packing"):
        train = pack_text_dataset(train_text, tokenizer, data_args.block_size, data_args.text_column)
        held_out = pack_text_dataset(eval_text, tokenizer, data_args.block_size, data_args.text_column)
    held_out = (datasets.Dataset.from_list(list(held_out.take(data_args.max_eval_blocks))) if data_args.streaming
                else held_out.select(range(min(data_args.max_eval_blocks, len(held_out)))))
    model = with_lora(load_model(model_args, tokenizer), model_args)

    trainer = TSTTrainer(model=model, args=args, train_dataset=train, eval_dataset=held_out,
                         processing_class=tokenizer)
    resume = args.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume in ("last", "true", "True") else resume)
    trainer.save_model()
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    trainer.create_model_card(dataset=data_args.dataset_name or data_args.train_files)
    trainer.save_state()  # trainer_state.json: the log history that compare.py and sweep.py read
    if trainer.is_world_process_zero():
        print(f"final eval loss {metrics['eval_loss']:.4f} (next-token, {len(held_out)} held-out blocks of "
              f"{data_args.block_size}); checkpoint in {args.output_dir}")
        if script_args.closing_note:
            print(script_args.closing_note)
    return metrics


def train_variant(argv: list[str], output_dir: str, **overrides) -> dict:
    """`main` on `argv` with `--field value` overrides and its own output_dir: one run of a comparison or sweep."""
    flags = [item for key, value in overrides.items() for item in (f"--{key}", str(value))]
    return main([*argv, *flags, "--output_dir", output_dir])


if __name__ == "__main__":
    main()
