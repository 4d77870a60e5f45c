"""The model of a pre-training run: built from a config (from scratch) or loaded (continued
pre-training), optionally wrapped in a LoRA adapter."""

from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging

from .arguments import ModelArguments
from .errors import UsageError, causes

logger = logging.get_logger(__name__)


def load_model(model_args: ModelArguments, tokenizer):
    """A causal LM; one trained from scratch takes its vocabulary and special tokens from `tokenizer`."""
    if model_args.model_name_or_path:
        return from_pretrained(AutoModelForCausalLM, "--model_name_or_path", model_args.model_name_or_path)
    config = from_pretrained(AutoConfig, "--model_config", model_args.model_config)
    if model_args.config_overrides:
        apply_overrides(config, model_args.config_overrides)
    config.vocab_size = len(tokenizer)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = (
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config)


def from_pretrained(auto_class, flag: str, name: str):
    """`auto_class.from_pretrained(name)`; a `name` that names nothing loadable (no such folder or Hub repository, a
    folder without the files, a Hub id while offline) is refused by its flag. A network failure, or a file that
    exists but does not load, is a runtime failure, raised as it is."""
    try:
        return auto_class.from_pretrained(name)
    except OSError as error:
        if any(isinstance(cause, (ConnectionError, TimeoutError, HfHubHTTPError)) and not isinstance(
                cause, (RepositoryNotFoundError, EntryNotFoundError)) for cause in causes(error)):
            raise
        raise UsageError(f"{flag} {name}: nothing to load there ({str(error).splitlines()[0]}); pass a local folder "
                         "or a Hub id (online, or in the cache when offline).") from error


def apply_overrides(config, overrides: str) -> None:
    """`config.update_from_string(overrides)`, each pair checked (a field the config has, a value of its type), keeping
    a derived head width derived: a config whose `head_dim`
    was `hidden_size // num_attention_heads` (computed when it was built, not chosen) gets it recomputed from the
    new values, as a config built with them would; an explicit `head_dim` in `overrides` wins."""
    derived = getattr(config, "head_dim", None) is not None and getattr(config, "num_attention_heads", None) and (
        config.head_dim == config.hidden_size // config.num_attention_heads)
    for pair in overrides.split(","):  # one at a time, to name the one that fails
        key, _, value = (part.strip() for part in pair.partition("="))
        if not value or "=" in value or not hasattr(config, key):
            raise UsageError(f"--config_overrides {pair!r}: not a field=value pair of {type(config).__name__}; "
                             "write them as 'hidden_size=256,num_hidden_layers=8' with the config's field names.")
        current = getattr(config, key)
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(current))
        if kind is None:
            raise UsageError(f"--config_overrides {pair!r}: {key} is {current!r}, which an override cannot set (only "
                             "integer, number, true/false and string fields); edit the config instead.")
        try:
            config.update_from_string(f"{key}={value}")
        except ValueError:
            raise UsageError(f"--config_overrides {pair!r}: {key} takes {kind} (the config has {current!r}).") from None
    if derived and "head_dim=" not in overrides:
        config.head_dim = config.hidden_size // config.num_attention_heads


def with_lora(model, model_args: ModelArguments):
    """`model` wrapped in a LoRA adapter on all linear layers when `lora_r` is set (the `peft` extra)."""
    if model_args.lora_r <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    embeddings = [model.get_input_embeddings(), model.get_output_embeddings()]
    names = [name for name, module in model.named_modules() if any(module is e for e in embeddings)]
    return get_peft_model(model, LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, target_modules="all-linear",
        modules_to_save=[name.rsplit(".", 1)[-1] for name in names] if model_args.lora_train_embeddings else None))


def check_positions(model, positions: int) -> None:
    """Refuse rows of more `positions` than a learned (absolute) position table holds, where the model
    would index past it; warn when a model without one (rotary, ALiBi) goes past its configured maximum.
    A superposition row runs on as many positions as a plain one (the block size L)."""
    config = model.config.get_text_config()
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not limit or positions <= limit:
        return
    name = type(model).__name__
    if learned_position_table(model, limit):
        raise UsageError(f"block_size={positions}: rows of {positions} positions are longer than {name}'s learned "
                         f"position table ({limit} positions, max_position_embeddings); use --block_size {limit} "
                         "or less.")
    logger.warning(f"block_size={positions} is past {name}'s max_position_embeddings={limit}: its positions "
                   "extrapolate beyond what it was configured for.")


def learned_position_table(model, limit: int) -> bool:
    """Whether `model` has a learned position embedding of about `limit` rows (GPT-2's wpe, OPT's offset
    table), besides its token embedding."""
    tokens = model.get_input_embeddings()
    return any(isinstance(module, nn.Embedding) and module is not tokens and limit <= module.num_embeddings <= limit + 2
               for module in model.modules())


def vocab_size(model) -> int | None:
    """Rows of the model's input embedding (read from the module, so it holds for sharded weights too)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return getattr(embedding, "num_embeddings", None)


def pad_token_id(model, processing_class) -> int:
    """Pad id for the collator: the tokenizer's, else the model config's, else 0 (pads are masked anyway)."""
    for source in (processing_class, getattr(model, "config", None)):
        pad = getattr(source, "pad_token_id", None)
        if pad is not None:
            return pad
    return 0
