"""Bad data and mismatched vocabularies fail with a message naming the parameter and the fix,
before any optimizer step changes the model."""

from pathlib import Path

import pytest
import torch
from conftest import packed_dataset, tiny_llama
from transformers import AutoTokenizer

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
