"""The argument dataclasses of a pre-training run, besides `TSTConfig`: which model, which data, and
what the run prints at the end. `hf-tst train`, the recipes and the comparisons parse
`TRAINING_ARGUMENTS` with `TSTParser`, so a config file serves all of them."""

from dataclasses import dataclass, field

from .config import TSTConfig
from .errors import UsageError
from .extras import require


@dataclass
class ModelArguments:
    _argument_group_name = "model"  # its heading in --help (HfArgumentParser)

    model_config: str | None = field(
        default=None, metadata={"help": "Config (local folder or Hub id) of a model to train from scratch."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated config overrides, e.g. 'hidden_size=256,num_hidden_layers=8'."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained model (local folder or Hub id) to continue pre-training instead."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank for parameter-efficient continued pre-training on "
                                                     "all linear layers (needs the `peft` extra); 0 trains every "
                                                     "parameter."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    lora_train_embeddings: bool = field(
        default=False, metadata={"help": "With LoRA, also fully train the input embeddings and the LM head."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer (local folder or Hub id); defaults to the model's."})

    def __post_init__(self):
        if not (self.model_config or self.model_name_or_path):
            raise UsageError("no model: pass --model_config (to train from scratch) or --model_name_or_path, or a "
                             "--config that names one (in a clone, --config recipes/configs/tiny.yaml is the main "
                             "job: a tiny Llama on the embedded corpus, offline).")
        if self.lora_r > 0:
            require("peft", "peft", f"lora_r={self.lora_r}")


@dataclass
class DataArguments:
    _argument_group_name = "data"

    dataset_name: list[str] | None = field(
        default=None, metadata={"help": "Hub dataset id, or several ids to mix; overrides the local files."})
    dataset_config_name: list[str] | None = field(
        default=None, metadata={"help": "Configuration of each Hub dataset, in the order of dataset_name."})
    dataset_probabilities: list[float] | None = field(
        default=None, metadata={"help": "Sampling probabilities of mixed datasets (default: equal)."})
    train_files: list[str] | None = field(default=None, metadata={"help": "Local JSON lines file(s) of training "
                                                                          "text, or Parquet files of pre-tokenized "
                                                                          "blocks (globs allowed)."})
    validation_files: list[str] | None = field(default=None, metadata={"help": "Local JSON lines file(s) of held-out "
                                                                               "text, or Parquet blocks."})
    validation_split: str = field(default="validation", metadata={"help": "Held-out split of the Hub dataset."})
    held_out_documents: int = field(
        default=0, metadata={"help": "Hold out the first N documents of each dataset's train split for evaluation "
                                     "instead of reading validation_split (for datasets with a train split only); "
                                     "held out before mixing, so none comes back into training."})
    text_column: str = field(default="text", metadata={"help": "Column holding the raw text."})
    block_size: int = field(default=128, metadata={"help": "Model sequence length L: tokens per packed block."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it."})
    max_eval_blocks: int = field(default=256, metadata={"help": "Held-out blocks used for evaluation."})

    def __post_init__(self):
        for name in ("dataset_name", "dataset_config_name", "dataset_probabilities", "train_files",
                     "validation_files"):
            setattr(self, name, as_list(getattr(self, name)))
        if not self.dataset_name and not (self.train_files and self.validation_files):
            raise UsageError("Pass --dataset_name, or both --train_files and --validation_files.")
        for name, least in (("max_eval_blocks", 1), ("held_out_documents", 0)):
            if getattr(self, name) < least:
                raise UsageError(f"{name}={getattr(self, name)}: it must be at least {least}.")
        mixed = len(self.dataset_name or [])
        if mixed and self.dataset_probabilities and len(self.dataset_probabilities) != mixed:
            raise UsageError(f"dataset_probabilities={self.dataset_probabilities} has "
                             f"{len(self.dataset_probabilities)} values for {mixed} "
                             "dataset(s) in dataset_name; give one per dataset, or none for equal mixing.")


@dataclass
class ScriptArguments:
    _argument_group_name = "job"

    closing_note: str | None = field(
        default=None, metadata={"help": "A line printed after the final eval loss: what is known about this setting "
                                        "(the tiny config says what the budget-ladder study found at its scale)."})


TRAINING_ARGUMENTS = (ModelArguments, DataArguments, ScriptArguments, TSTConfig)


def as_list(value) -> list | None:
    """A list field's value as a list: a YAML or command-line list stays one, a single value (a YAML scalar)
    becomes one, a comma-separated string (the older form, `a,b`) is split, and empty strings are dropped
    (`--dataset_name ""` unsets a config's value); None when empty."""
    values = value if isinstance(value, list | tuple) else [value]
    values = [part for item in values for part in (item.split(",") if isinstance(item, str) else [item])]
    return [item for item in values if item not in (None, "")] or None
