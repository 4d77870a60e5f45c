"""The model of a pre-training run: built from a config (from scratch) or loaded (continued
pre-training), optionally wrapped in a LoRA adapter."""

from transformers import AutoConfig, AutoModelForCausalLM

from .arguments import ModelArguments


def load_model(model_args: ModelArguments, tokenizer):
    """A causal LM; one trained from scratch takes its vocabulary and special tokens from `tokenizer`."""
    if model_args.model_name_or_path:
        return AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path)
    config = AutoConfig.from_pretrained(model_args.model_config)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
    config.vocab_size = len(tokenizer)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = (
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config)


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
