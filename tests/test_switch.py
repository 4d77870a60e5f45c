"""The switch figures against the per-step losses the Trainer itself logged (logging every step)."""

import pytest
import torch
from conftest import packed_dataset, tiny_llama

from hf_tst import TSTConfig, TSTTrainer
from hf_tst.switch import SwitchWatch, describe_switch, switch_figures


def recovery_after(losses: list[float], window: int) -> int | None:
    """By hand: updates until the mean of the last `window` losses falls below the first."""
    for k in range(2, len(losses) + 1):
        recent = losses[max(0, k - window):k]
        if sum(recent) / len(recent) < losses[0]:
            return k - 1
    return None


@pytest.mark.parametrize("accumulation", [1, 2])
def test_switch_figures_are_the_logged_losses_of_the_first_recovery_steps(make_config, accumulation):
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(200, 12, 97),
                         args=make_config(max_steps=24, tst_ratio=0.25, tst_bag_size=3, learning_rate=3e-2,
                                          gradient_accumulation_steps=accumulation))
    trainer.train()
    losses = {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}
    recovery = [losses[step] for step in range(7, 25)]
    figures = switch_figures(trainer.state.log_history)
    assert figures["tst_switch_loss_before"] == pytest.approx(recovery[0], rel=1e-6)
    assert figures["tst_switch_loss_after"] == pytest.approx(recovery[1], rel=1e-6)
    expected = recovery_after(recovery, window=10)
    assert figures.get("tst_recovery_steps") == expected
    assert describe_switch(figures, 6).startswith(
        f"At the switch (step 6) the next-token training loss of the superposed model was {recovery[0]:.4f}")


@pytest.mark.parametrize("steps, words", [(1, "after 1 recovery step."), (3, "after 3 recovery steps.")])
def test_the_switch_sentence_counts_recovery_steps_in_the_singular_and_the_plural(steps, words):
    figures = {"tst_switch_loss_before": 6.89, "tst_switch_loss_after": 6.78, "tst_recovery_steps": steps}
    assert describe_switch(figures, 90).endswith(f"the running loss was back below its value at the switch {words}")


def test_recovery_waits_for_the_running_loss_after_a_spike():
    """A spike after the switch: the trailing mean of 3 gets back below 5.0 only at the sixth loss."""
    watch = SwitchWatch(switch_step=10, micro_batches_per_step=1, reduce=float, window=3)
    for loss in [5.0, 6.0, 5.5, 5.25, 4.875, 4.5, 4.0]:  # exact in float32
        if watch.watches(10 + len(watch.step_losses)):
            watch.add_micro_batch(torch.tensor(loss))
    assert watch.recovery_steps == 5 == recovery_after([5.0, 6.0, 5.5, 5.25, 4.875, 4.5], window=3)
    assert watch.step_losses == [5.0, 6.0, 5.5, 5.25, 4.875, 4.5]  # watching stops once recovered
    assert watch.pop_unlogged() == {"tst_switch_loss_before": 5.0, "tst_switch_loss_after": 6.0,
                                     "tst_recovery_steps": 5}


def test_a_run_without_superposition_does_not_watch(make_config):
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 12, 97),
                         args=make_config(max_steps=4, tst_ratio=0.0))
    trainer.train()
    assert switch_figures(trainer.state.log_history) == {}


def test_default_arguments_build_and_an_epoch_based_run_switches_where_a_max_steps_run_does(make_config, tmp_path):
    """40 rows in batches of 4 are 10 batches; 3 of them a step: 4 steps an epoch (the last one partial);
    1.5 epochs: 6 steps, as a plain Trainer counts them; the switch at round(0.3 x 6) = 2. The epoch-based
    run then equals a max_steps=6 run step for step."""
    assert TSTConfig(output_dir=str(tmp_path)).superposition_steps == 0  # max_steps not known until train()
    TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(40, 8, 97))  # default arguments build
    data = packed_dataset(40, 8, 97)
    common = dict(gradient_accumulation_steps=3, tst_bag_size=4)
    plain = TSTTrainer(model=tiny_llama(), train_dataset=data, args=make_config(num_train_epochs=1.5, tst_ratio=0,
                                                                               **common))
    plain.train()  # tst_ratio=0: the plain Trainer's own loop counts the steps
    runs = [TSTTrainer(model=tiny_llama(), train_dataset=data, args=make_config(tst_ratio=0.3, **common, **length))
            for length in (dict(num_train_epochs=1.5), dict(max_steps=6))]
    for run in runs:
        run.train()
    by_epochs, by_steps = ([(log["step"], log["tst_bag_size"], log["loss"]) for log in run.state.log_history
                            if "loss" in log] for run in runs)
    assert plain.state.global_step == runs[0].state.global_step == 6 and runs[0].args.superposition_steps == 2
    assert [bag for _, bag, _ in by_epochs] == [4, 4, 1, 1, 1, 1]
    assert by_epochs == by_steps


def test_an_epoch_based_run_of_a_stream_is_refused_naming_max_steps(make_config):
    with pytest.raises(ValueError, match="max_steps has to be specified"):  # (Trainer's own check)
        TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(40, 8, 97).to_iterable_dataset(),
                   args=make_config(num_train_epochs=1))
    with pytest.raises(ValueError, match="streaming .* train_dataset does not give; set max_steps"):
        make_config(num_train_epochs=1).place_switch(examples=None)
