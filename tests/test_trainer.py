"""TSTTrainer end to end, each behaviour against an independent reference: a plain Trainer run,
the dataset's own read order, a run without gradient accumulation."""

import subprocess
import sys

import datasets
import pytest
import torch
from conftest import packed_dataset, padded_dataset, reference_loss, tiny_llama
from transformers import Trainer, TrainingArguments, default_data_collator

from hf_tst import TSTTrainer
from hf_tst.data import join_blocks


class Recording:
    """Mixin: remember every micro-batch's input_ids and every step's loss."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.seen_input_ids = getattr(self, "seen_input_ids", []) + [inputs["input_ids"].clone()]
        return super().training_step(model, inputs, num_items_in_batch)


class RecordingTrainer(Recording, Trainer):
    pass


class RecordingTSTTrainer(Recording, TSTTrainer):
    pass


def step_losses(trainer):
    return [log["loss"] for log in trainer.state.log_history if "loss" in log]


def plain_trainer(tmp_path, model, dataset, **overrides):
    args = dict(output_dir=str(tmp_path / "plain"), per_device_train_batch_size=4, learning_rate=1e-3,
                logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    return RecordingTrainer(model=model, args=TrainingArguments(**{**args, **overrides}), train_dataset=dataset,
                            data_collator=default_data_collator)


def blocks_of(batches, block_len):
    """The sequence of data blocks a run read, each as a tuple of token ids."""
    return [tuple(row[k:k + block_len].tolist()) for batch in batches for row in batch
            for k in range(0, len(row), block_len)]


def test_tst_ratio_zero_reproduces_plain_trainer_exactly(tmp_path, make_config):
    data = packed_dataset(64, 16, 97)
    plain = plain_trainer(tmp_path, tiny_llama(), data, max_steps=8)
    plain.train()
    tst = RecordingTSTTrainer(model=tiny_llama(), args=make_config(max_steps=8, tst_ratio=0.0, tst_fused_lm_head=False),
                              train_dataset=data)
    tst.train()
    assert step_losses(tst) == step_losses(plain)
    for p, q in zip(plain.model.parameters(), tst.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fused_lm_head_trains_like_plain_trainer_on_its_logits(tmp_path, make_config):
    """r=0 with the fused head (the default): the same run as plain Trainer, to float32 rounding."""
    data = padded_dataset(64, 16, 97)
    labelled = data.map(lambda row: {"labels": [t if m else -100 for t, m in zip(row["input_ids"],
                                                                                 row["attention_mask"], strict=True)]})
    plain = plain_trainer(tmp_path, tiny_llama(), labelled, max_steps=8, gradient_accumulation_steps=2)
    plain.train()
    tst = RecordingTSTTrainer(model=tiny_llama(), args=make_config(max_steps=8, tst_ratio=0.0,
                                                                   gradient_accumulation_steps=2),
                              train_dataset=data)
    tst.train()
    assert tst._fused_head[1] is not None
    torch.testing.assert_close(torch.tensor(step_losses(tst)), torch.tensor(step_losses(plain)), rtol=1e-6, atol=1e-6)
    for p, q in zip(plain.model.parameters(), tst.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)  # Adam magnifies float32 rounding of tiny grads


def test_bag_size_one_superposition_path_reproduces_plain_trainer(tmp_path, make_config):
    """s=1 goes through the whole superposition path (stream, hook, MCE) and must equal plain training."""
    data = packed_dataset(64, 16, 97)
    plain = plain_trainer(tmp_path, tiny_llama(), data, max_steps=8)
    plain.train()
    tst = RecordingTSTTrainer(model=tiny_llama(), args=make_config(max_steps=8, tst_ratio=0.5, tst_bag_size=1),
                              train_dataset=data)
    tst.train()
    phases = [log["tst_phase"] for log in tst.state.log_history if "loss" in log]
    assert phases == ["superposition"] * 4 + ["recovery"] * 4
    assert all(torch.equal(a, b) for a, b in zip(plain.seen_input_ids, tst.seen_input_ids, strict=True))
    torch.testing.assert_close(torch.tensor(step_losses(tst)), torch.tensor(step_losses(plain)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("superpose", "fold", "steps"), [("full", "sequence", 10), ("output", "sequence", 20),
                                                         ("full", "batch", 10)])
def test_map_style_data_is_read_once_per_epoch_across_the_switch(tmp_path, make_config, superpose, fold, steps):
    """30 blocks: 4 superposition steps read 24, recovery the rest of the pass and then a new one
    (superpose='output', with single-block rows, runs 20 steps: 16 blocks, then 24 in recovery, so it too
    reads a whole pass). Rows of random blocks (batch folding, single-block rows) read them in the plain
    Trainer's order; contiguous rows read them in groups (checked by the contiguity test below)."""
    L, s, batch = 8, 3, 2
    bagged_steps = round(0.4 * steps)
    data = packed_dataset(30, L, 97)
    tst = RecordingTSTTrainer(model=tiny_llama(), train_dataset=data,
                              args=make_config(max_steps=steps, tst_ratio=0.4, tst_bag_size=s, tst_superpose=superpose,
                                               tst_fold=fold, per_device_train_batch_size=batch))
    tst.train()
    read = blocks_of(tst.seen_input_ids, L)
    blocks_per_row = s if superpose == "full" else 1
    recovery = [(batch, L)] * (steps - bagged_steps)
    if fold == "sequence":  # s blocks joined into each row
        assert [tuple(x.shape) for x in tst.seen_input_ids] == [(batch, L * blocks_per_row)] * bagged_steps + recovery
    else:  # each block a row of its own, s times the rows; L=8 tokens make 3 bags, the last one partial
        assert [tuple(x.shape) for x in tst.seen_input_ids] == [(batch * s, 9)] * bagged_steps + recovery
        read = blocks_of([x[:, :L] for x in tst.seen_input_ids], L)
    assert len(read) == bagged_steps * batch * blocks_per_row + (steps - bagged_steps) * batch > len(data)
    first_epoch = read[:len(data)]
    assert sorted(first_epoch) == sorted(tuple(x) for x in data["input_ids"])  # each block once, none skipped
    assert tst.state.epoch == pytest.approx(len(read) / len(data))  # epochs count passes over the data
    if superpose == "full" and fold == "sequence":
        return
    # The reference: the blocks a plain Trainer reads from the same dataset with the same seed.
    plain = plain_trainer(tmp_path, tiny_llama(), data, max_steps=len(read) // batch,
                          per_device_train_batch_size=batch)
    plain.train()
    assert read == blocks_of(plain.seen_input_ids, L)


def position_coded_dataset(num_blocks: int, block_len: int):
    """Packed blocks of a corpus whose token at position p has id p: a block's ids say where it came from."""
    return datasets.Dataset.from_dict({"input_ids": torch.arange(num_blocks * block_len).view(num_blocks, -1).tolist()})


@pytest.mark.parametrize(("num_blocks", "epochs"), [
    (60, 64 / 60),  # the switch falls in the first pass: 16 rows of 3 blocks, its 12 others, 4 of the next pass
    (20, 3.4),  # two passes of 6 rows (2 blocks left out of each), 4 rows + 8 blocks, 8 blocks of the fourth
])
def test_superposition_rows_are_contiguous_corpus_ranges_in_shuffled_order(make_config, num_blocks, epochs):
    """The paper's data sequence: a superposition row is L*s consecutive tokens of the corpus. Rows come
    in a shuffled order; a pass reads every block at most once, and the pass where the switch falls reads
    each exactly once, the recovery rows taking the blocks superposition left."""
    L, s, batch, steps, bagged_steps = 4, 3, 2, 16, 8
    data = position_coded_dataset(num_blocks, L)
    tst = RecordingTSTTrainer(model=tiny_llama(vocab_size=num_blocks * L), train_dataset=data,
                              args=make_config(max_steps=steps, tst_ratio=bagged_steps / steps, tst_bag_size=s,
                                               per_device_train_batch_size=batch))
    tst.train()
    bagged_rows = [row for x in tst.seen_input_ids[:bagged_steps] for row in x.tolist()]
    assert all(row == list(range(row[0], row[0] + L * s)) and row[0] % (L * s) == 0 for row in bagged_rows)
    starts = [row[0] for row in bagged_rows]
    assert starts != sorted(starts)  # shuffled, not the dataset's order
    blocks = [row[0] // L for row in bagged_rows for _ in range(s)]
    blocks = [first + k for first, k in zip(blocks, list(range(s)) * len(bagged_rows), strict=True)]
    blocks += [row[0] // L for x in tst.seen_input_ids[bagged_steps:] for row in x.tolist()]
    groups_per_pass = num_blocks // s
    passes, rows_left = [], len(bagged_rows)
    while rows_left > groups_per_pass:  # passes wholly in superposition: the last num_blocks % s blocks fill no row
        passes.append(blocks[:groups_per_pass * s])
        blocks, rows_left = blocks[groups_per_pass * s:], rows_left - groups_per_pass
    passes.append(blocks[:num_blocks])
    for read in passes[:-1]:
        assert len(set(read)) == len(read) == num_blocks // s * s
    assert sorted(passes[-1]) == list(range(num_blocks))  # the switch's pass: every block exactly once
    assert tst.state.epoch == pytest.approx(epochs)


def test_batch_folding_and_contiguous_rows_false_draw_random_blocks(make_config):
    """Batch folding keeps single-block rows drawn at random (its s blocks become separate rows), as does
    tst_contiguous_rows=False for sequence folding."""
    L, s = 4, 3
    data = position_coded_dataset(60, L)
    for overrides in (dict(tst_fold="batch"), dict(tst_contiguous_rows=False)):
        tst = RecordingTSTTrainer(model=tiny_llama(vocab_size=240), train_dataset=data,
                                  args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=s, **overrides))
        tst.train()
        bagged = tst.seen_input_ids[0].view(-1, L)[:, 0].view(-1, s)  # the first token of each block, by row
        assert not all(row.tolist() == list(range(row[0], row[0] + L * s, L)) for row in bagged)


def test_batch_folding_step_bags_each_block_and_matches_the_reference(make_config):
    """A batch-folded superposition batch is the sequence-folding batch of its blocks taken one per row
    (padded documents of 7 to 12 tokens, bags of 5: partial bags and padding), and its loss is the
    hand-written reference's."""
    s = 5
    blocks = list(padded_dataset(6, 12, 97))
    trainer = TSTTrainer(model=tiny_llama().eval(), args=make_config(max_steps=10, tst_bag_size=s, tst_fold="batch"))
    folded = trainer.data_collator([{"blocks": [join_blocks([b], s) for b in blocks[:3]]},
                                    {"blocks": [join_blocks([b], s) for b in blocks[3:]]}])
    one_per_row = trainer.data_collator([join_blocks([b], s) for b in blocks])
    assert folded.keys() == one_per_row.keys()
    assert all(torch.equal(folded[k], one_per_row[k]) for k in folded)
    assert folded["input_ids"].shape == (6, 15)
    loss = trainer.compute_loss(trainer.model, folded)
    expected = reference_loss(trainer.model, folded["input_ids"], folded["attention_mask"], s)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_dataloader_workers_read_the_same_stream(make_config):
    L, s = 8, 3
    data = packed_dataset(30, L, 97)
    reads = []
    for workers in (0, 2):
        tst = RecordingTSTTrainer(model=tiny_llama(), train_dataset=data,
                                  args=make_config(max_steps=6, tst_ratio=0.5, tst_bag_size=s,
                                                   per_device_train_batch_size=2, dataloader_num_workers=workers))
        tst.train()
        reads.append(blocks_of(tst.seen_input_ids, L))
    assert reads[0] == reads[1]


def test_stream_workers_read_their_own_shards_every_block_once(make_config):
    """40 position-coded blocks in 4 shards, 2 workers: each worker reads its 2 shards; 4 superposition steps
    (rows of 2 consecutive blocks of one worker's stream) and 12 recovery steps read each block exactly once."""
    L, s = 4, 2
    stream = position_coded_dataset(40, L).to_iterable_dataset(num_shards=4)
    tst = RecordingTSTTrainer(model=tiny_llama(vocab_size=160), train_dataset=stream,
                              args=make_config(max_steps=16, tst_ratio=0.25, tst_bag_size=s,
                                               per_device_train_batch_size=2, dataloader_num_workers=2))
    tst.train()
    bagged_rows = [row for x in tst.seen_input_ids[:4] for row in x.tolist()]
    assert all(row == list(range(row[0], row[0] + L * s)) for row in bagged_rows)  # consecutive blocks
    read = blocks_of(tst.seen_input_ids, L)
    assert len(read) == 40 and sorted(read) == sorted(tuple(range(k, k + L)) for k in range(0, 160, L))


@pytest.mark.parametrize("shards, workers", [(4, 3), (1, 2)])
def test_stream_workers_that_do_not_divide_the_shards_are_refused(make_config, shards, workers):
    stream = packed_dataset(40, 8, 97).to_iterable_dataset(num_shards=shards)
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=stream,
                         args=make_config(max_steps=4, dataloader_num_workers=workers))
    with pytest.raises(ValueError, match=f"dataloader_num_workers={workers}: .* the train_dataset has {shards} "
                                         r"shard\(s\); use a worker count that divides them"):
        trainer.train()  # checked where the loader is built, on what each process reads, before any step


def test_streaming_dataset_is_read_once_in_its_own_order_across_the_switch(make_config):
    L, s, batch = 8, 4, 2
    data = packed_dataset(20, L, 97)
    stream = data.to_iterable_dataset()
    tst = RecordingTSTTrainer(model=tiny_llama(), train_dataset=stream,
                              args=make_config(max_steps=6, tst_ratio=0.5, tst_bag_size=s,
                                               per_device_train_batch_size=batch))
    tst.train()
    read = blocks_of(tst.seen_input_ids, L)
    dataset_order = [tuple(x) for x in data["input_ids"]]
    assert len(read) == 3 * batch * s + 3 * batch == 30
    assert read == (dataset_order * 2)[:30]  # one whole pass, then the next epoch continues


@pytest.mark.parametrize(("weighting", "fold"), [("uniform", "sequence"), ("power_law", "sequence"),
                                                 ("power_law", "batch")])
def test_gradient_accumulation_gives_the_same_update_in_both_phases(make_config, weighting, fold):
    data = padded_dataset(96, 12, 97)
    runs = []
    for batch, accumulation in [(8, 1), (2, 4)]:
        trainer = TSTTrainer(model=tiny_llama(), train_dataset=data,
                             args=make_config(max_steps=4, tst_ratio=0.5, tst_bag_size=3, tst_weighting=weighting,
                                              tst_fold=fold, per_device_train_batch_size=batch,
                                              gradient_accumulation_steps=accumulation))
        trainer.train()
        runs.append(trainer)
    torch.testing.assert_close(torch.tensor(step_losses(runs[0])), torch.tensor(step_losses(runs[1])),
                               rtol=1e-6, atol=1e-6)
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)  # rows padded to other lengths round differently


def test_logs_carry_phase_mce_and_data_tokens_and_eval_is_next_token_loss(tmp_path, make_config):
    L, s, batch = 16, 4, 4
    data = packed_dataset(64, L, 97)
    held_out = packed_dataset(8, L, 97, seed=1)
    tst = TSTTrainer(model=tiny_llama(), train_dataset=data, eval_dataset=held_out,
                     args=make_config(max_steps=5, tst_ratio=0.4, tst_bag_size=s, logging_steps=3,
                                      eval_strategy="steps", eval_steps=100))
    tst.train()
    train_logs = [log for log in tst.state.log_history if "loss" in log]
    # Logging every 3 steps, plus a forced log at the switch (step 2), so no window mixes phases.
    assert [(log["step"], log["tst_phase"]) for log in train_logs] == [(2, "superposition"), (3, "recovery")]
    assert train_logs[0]["mce_loss"] == train_logs[0]["loss"] and "mce_loss" not in train_logs[1]
    assert [log["num_input_tokens_seen"] for log in train_logs] == [2 * batch * L * s, 2 * batch * L * s + batch * L]
    assert 2 in [log["step"] for log in tst.state.log_history if "eval_loss" in log]  # evaluated at the switch
    # Evaluation is the standard next-token loss of the current model, whatever the phase.
    reference = Trainer(model=tst.model, args=TrainingArguments(output_dir=str(tmp_path / "ref"), report_to="none",
                                                                use_cpu=True, per_device_eval_batch_size=8),
                        data_collator=default_data_collator, eval_dataset=held_out)
    assert tst.evaluate()["eval_loss"] == pytest.approx(reference.evaluate()["eval_loss"], rel=1e-6)


def test_checkpoint_is_a_plain_causal_lm(tmp_path, make_config):
    data = packed_dataset(64, 16, 97)
    tst = TSTTrainer(model=tiny_llama(), train_dataset=data, args=make_config(max_steps=4, tst_bag_size=4))
    tst.train()
    tst.save_model(str(tmp_path / "final"))
    probe = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'final')!r})\n"
        "out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, do_sample=False)\n"
        "assert out.shape == (1, 8), out.shape\n"
        "assert not any(m.startswith('hf_tst') for m in sys.modules)\n"
        "print(type(model).__name__, out.tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("LlamaForCausalLM")
    saved_config = (tmp_path / "final" / "config.json").read_text()
    assert "tst" not in saved_config


@pytest.mark.parametrize("checkpoint", [3, 4])  # mid-superposition; at the switch (always saved there)
def test_resumed_run_reproduces_the_uninterrupted_one(tmp_path, make_config, checkpoint):
    data = packed_dataset(40, 8, 97)

    def run(output_dir, resume=None):
        args = make_config(output_dir=str(output_dir), max_steps=8, tst_ratio=0.5, tst_bag_size=3,
                           per_device_train_batch_size=2, save_strategy="steps", save_steps=3)
        trainer = TSTTrainer(model=tiny_llama(), args=args, train_dataset=data)
        trainer.train(resume_from_checkpoint=resume)
        return {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}

    uninterrupted = run(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == [
        "checkpoint-3", "checkpoint-4", "checkpoint-6", "checkpoint-8"]
    resumed = run(tmp_path / "b", resume=str(tmp_path / "a" / f"checkpoint-{checkpoint}"))
    assert resumed == uninterrupted
