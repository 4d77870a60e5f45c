"""Bad data and mismatched vocabularies fail with a message naming the parameter and the fix,
before any optimizer step changes the model."""

from pathlib import Path

import pytest
import torch
from conftest import packed_dataset, tiny_llama
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hf_tst import TSTTrainer


def untouched_after_failed_train(trainer, message):
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(ValueError, match=message):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


@pytest.mark.parametrize("streaming", [False, True])
def test_dataset_smaller_than_one_superposition_batch(make_config, streaming):
    data = packed_dataset(7, 8, 97)  # one superposition micro-batch of 2 rows x 4 blocks needs 8 blocks
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=data.to_iterable_dataset() if streaming else data,
                         args=make_config(max_steps=4, tst_bag_size=4, per_device_train_batch_size=2))
    untouched_after_failed_train(trainer, r"holds 7 blocks, fewer than one batch needs \(per_device_train_batch_size"
                                          r" 2 x 4 blocks per row = 8\).*lower per_device_train_batch_size or "
                                          "tst_bag_size")


def test_empty_dataset_points_at_short_documents(make_config):
    data = packed_dataset(0, 8, 97)
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=data, args=make_config(max_steps=4, tst_bag_size=4))
    untouched_after_failed_train(trainer, "holds 0 blocks.*documents are short")


def test_token_ids_outside_the_model_vocabulary(make_config):
    data = packed_dataset(32, 8, 300)  # tokenised with a 300-token vocabulary, model has 97
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=data, args=make_config(max_steps=4, tst_bag_size=2))
    untouched_after_failed_train(trainer, r"token id \d+ in the data lies outside the model's vocabulary \[0, 97\).*"
                                          "re-tokenise")


def test_tokenizer_larger_than_the_model_vocabulary(make_config):
    tokenizer = AutoTokenizer.from_pretrained(Path(__file__).parents[1] / "recipes" / "tokenizer")
    with pytest.raises(ValueError, match=r"8192 tokens but the model's input embedding only 97 rows.*"
                                         r"resize_token_embeddings\(8192\)"):
        TSTTrainer(model=tiny_llama(), processing_class=tokenizer, args=make_config(max_steps=4))


@pytest.mark.parametrize("model_type", ["gpt2", "opt"])
def test_blocks_longer_than_a_learned_position_table_are_refused_with_the_fix(model_type, make_config):
    config = AutoConfig.for_model(model_type, vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=32,
                                  hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=2,
                                  word_embed_proj_dim=32, max_position_embeddings=32)
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(ValueError, match=r"block_size=64: rows of 64 positions are longer than .*learned position "
                                         r"table \(32 positions.*use --block_size 32 or less"):
        TSTTrainer(model=model, args=make_config(max_steps=4), train_dataset=packed_dataset(64, 64, 97))
    TSTTrainer(model=model, args=make_config(max_steps=4), train_dataset=packed_dataset(64, 32, 97))  # fits


def test_a_rotary_model_past_its_configured_maximum_is_warned_about(make_config, caplog):
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
    with caplog.at_level("WARNING", logger="hf_tst.modeling"):
        TSTTrainer(model=model, args=make_config(max_steps=4), train_dataset=packed_dataset(64, 64, 97))
    assert "block_size=64 is past LlamaForCausalLM's max_position_embeddings=32" in caplog.text


@pytest.mark.parametrize("tst_ratio", [0.5, 0])
def test_labels_that_differ_from_input_ids_are_refused_and_a_copy_is_accepted(make_config, tst_ratio):
    """TST builds its own targets from input_ids, so other labels would be silently ignored: refused when
    the first row has them (at construction) or a later one (when it is read, before its step)."""
    data = packed_dataset(32, 8, 97)  # labels: a copy of input_ids, as run_clm packs them
    TSTTrainer(model=tiny_llama(), train_dataset=data, args=make_config(max_steps=2, tst_ratio=tst_ratio)).train()
    shifted = data.map(lambda row: {"labels": row["input_ids"][1:] + [-100]})
    with pytest.raises(ValueError, match="'labels' column differs from its 'input_ids': TST builds its own targets"):
        TSTTrainer(model=tiny_llama(), train_dataset=shifted, args=make_config(max_steps=2, tst_ratio=tst_ratio))
    one_bad = data.map(lambda row, i: {"labels": [-100] * 8 if i == 9 else row["labels"]}, with_indices=True)
    for train_dataset in (one_bad, one_bad.to_iterable_dataset()):
        trainer = TSTTrainer(model=tiny_llama(), train_dataset=train_dataset,
                             args=make_config(max_steps=8, tst_ratio=tst_ratio, tst_bag_size=2,
                                              train_sampling_strategy="sequential"))
        with pytest.raises(ValueError, match="'labels' column differs from its 'input_ids'"):
            trainer.train()


@pytest.mark.parametrize("length, fold, message", [
    (1, "sequence", r"=1: a row needs at least 2 tokens, one to read and the next to predict"),
    (4, "batch", r"=4: tst_fold='batch' folds a row of L tokens into bags of s = tst_bag_size = 4.*block size of 5"),
])
def test_rows_that_leave_no_next_token_or_bag_to_predict_are_refused(make_config, length, fold, message):
    with pytest.raises(ValueError, match=message):
        TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(40, length, 97),
                   args=make_config(max_steps=4, tst_bag_size=4, tst_fold=fold))
    TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(40, length + 1, 97),  # one more token is enough
               args=make_config(max_steps=4, tst_bag_size=4, tst_fold=fold))
