"""`TSTTrainer`: a `transformers.Trainer` that runs the superposition phase, then recovery.

Optimizer steps 1..S (`hf_tst.phase`) read s blocks per row, feed the model bag means and train it with the
multi-hot cross-entropy; later steps are the plain `Trainer` causal-LM step. Model, optimizer state and LR
schedule carry over the switch untouched; what is saved is the model as it is, an ordinary causal-LM checkpoint.
"""

import contextlib
import os
from collections.abc import Callable

import torch
from accelerate.data_loader import prepare_data_loader
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length
from transformers.utils import logging

from .checks import check_before_training, check_stream_readers
from .config import TSTConfig, as_tst_config
from .data import PhasedBlockStream, TSTDataCollator
from .errors import UsageError, step_noted
from .extras import import_deepspeed_only_when_used
from .guard import NonFiniteGuard, drop_step_gradients
from .head import FusedLMHead, fused_head_for
from .hub import push_phase_switch_checkpoint, write_model_card
from .loss import multi_hot_cross_entropy, valid_target_weights
from .modeling import pad_token_id, vocab_size
from .phase import check_batch_phase, in_superposition, phase_name
from .preemption import IgnoreSignalsInWorker, SaveOnSignal
from .resume import finished_run_output, place_stream, resume_point, run_settings, save_checkpoint_whole
from .run_lock import hold_output_dir
from .superpose import EmbeddingSuperposition, next_tokens_targets
from .switch import PhaseSwitchCallback, SwitchWatch
from .throughput import ThroughputMeter, peak_tflops

logger = logging.get_logger(__name__)


class TSTTrainer(Trainer):
    """Drop-in `Trainer` for Token-Superposition Training.

    Takes the arguments of `transformers.Trainer`, with three differences:

    - `args` is a `TSTConfig`. A plain `TrainingArguments` is converted (`TSTConfig.from_training_arguments`)
      with the TST defaults, and a warning says so; pass a `TSTConfig` to choose the `tst_*` fields.
    - `train_dataset` is that of a plain pre-training run (items with `input_ids`), and `data_collator`
      stays unset: each phase builds its own batches.
    - `compute_loss_func` is refused: the loss is TST's (multi-hot cross-entropy, then next-token).
    """

    def __init__(
        self,
        model: PreTrainedModel | nn.Module | None = None,
        args: TSTConfig | TrainingArguments | None = None,
        data_collator: TSTDataCollator | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        processing_class=None,
        model_init: Callable[..., PreTrainedModel] | None = None,
        compute_loss_func: Callable | None = None,
        compute_metrics: Callable | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
        optimizer_cls_and_kwargs: tuple | None = None,
        preprocess_logits_for_metrics: Callable | None = None,
    ):
        args = as_tst_config(args)
        import_deepspeed_only_when_used()  # before Trainer's init unwraps the model
        check_before_training(model, args, train_dataset, processing_class, compute_loss_func)
        if data_collator is None:
            data_collator = TSTDataCollator(pad_token_id=pad_token_id(model, processing_class),
                                            superpose=args.tst_superpose, vocab_size=vocab_size(model))
        if not isinstance(data_collator, TSTDataCollator):
            raise TypeError(f"data_collator must be a TSTDataCollator (got {type(data_collator).__name__}): TST "
                            "builds each phase's batches itself. Leave data_collator unset.")
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, model_init=model_init,
                         compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers,
                         optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
                         preprocess_logits_for_metrics=preprocess_logits_for_metrics)
        self._settings_recorder = PhaseSwitchCallback(**self.run_settings())
        self.add_callback(self._settings_recorder)
        self._preemption = SaveOnSignal(args.tst_save_on_signal, any_process=self._any_process)
        self.add_callback(self._preemption)
        self._superposition = None  # the embedding hook, made on the first superposition step
        self._fused_head = None  # (LM head, its FusedLMHead or None), decided on the first training step
        self._block_stream = None  # the training data stream, made with the train dataloader
        self._switch_watch = None  # the recovery steps' losses after the switch, made by train()
        self._throughput = None  # FLOPs and data tokens per logging window, made by train()
        self._guard = None  # the non-finite loss guard, made by train()
        self._resumed = None  # (checkpoint, its step) of a resumed run, set by train()
        self._stream_placed = False  # whether the stream starts at the resumed step (else Trainer replays it)
        if args.tst_skip_nonfinite_steps and self.is_deepspeed_enabled:
            raise UsageError("tst_skip_nonfinite_steps=True cannot skip a step under DeepSpeed, which steps the "
                             "optimizer inside backward; leave it False (the run then stops before the step).")

    def run_settings(self) -> dict:
        """The settings that place the phase switch and decide which block each row reads (`resume.run_settings`);
        checkpoints record them."""
        return run_settings(self.args, self._rows_per_step(), self.train_dataset)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs):
        """`Trainer.train` holding `output_dir` (`run_lock`), the switch of an epoch-based run placed first; resuming
        (`resume.resume_point`: a folder, `True`/`"last"`, or `"auto"`) only from a whole checkpoint of the same
        settings, training nothing past `max_steps`; a failure carries its step (`step_noted`). Writes the card."""
        self.args.place_switch(len(self.train_dataset) if has_length(self.train_dataset) else None)
        self._settings_recorder.settings = self.run_settings()
        with (hold_output_dir(self.args.output_dir, self.is_world_process_zero(), self._any_process),
              step_noted(lambda: self.state.global_step)):
            self._resumed = resume_point(self, resume_from_checkpoint)
            if self._resumed is not None and self._resumed[1] >= self.args.max_steps > 0:
                return finished_run_output(self, self._resumed[0])
            self._guard = NonFiniteGuard(self.args, any_process=self._any_process)
            self._switch_watch = SwitchWatch(
                self.args.superposition_steps, self.args.gradient_accumulation_steps,
                reduce=lambda loss: nested_gather(loss, self.args.parallel_mode).mean().item())
            self._throughput = ThroughputMeter(self.model, self.args.tst_peak_tflops or peak_tflops(self.args.device),
                                               self.args.device)
            with self._preemption.handlers():
                output = super().train(resume_from_checkpoint=self._resumed and self._resumed[0], trial=trial,
                                       **kwargs)
        try:
            self.create_model_card()
        except Exception as error:  # noqa: BLE001 - the trained model is worth more than its card
            logger.warning(f"TSTTrainer: training finished, but the model card could not be written to "
                           f"{self.args.output_dir} ({type(error).__name__}: {error}); the model is intact: "
                           "save it with trainer.save_model(), then call trainer.create_model_card() again.")
        return output

    # ---- data ----

    def get_train_dataloader(self) -> DataLoader:
        """The phase-aware stream of rows, placed at the resumed step (`resume.place_stream`), built here as Trainer's
        column filtering would strip `bag_size`; its workers leave the preemption signals to this process."""
        args = self.args
        if args.superposition_steps == 0 or self.train_dataset is None:  # Trainer's loader, or its refusal of None
            check_stream_readers(self.train_dataset, args.dataloader_num_workers, "the train_dataset")
            loader = super().get_train_dataloader()
        else:
            self._block_stream = PhasedBlockStream.for_run(self.train_dataset, args, self._train_batch_size,
                                                           args.process_index, args.world_size)
            self._stream_placed = place_stream(self._block_stream, self._resumed, self.args, self._any_process)
            loader = DataLoader(self._block_stream, batch_size=self._train_batch_size, collate_fn=self.data_collator,
                                num_workers=args.dataloader_num_workers, pin_memory=args.dataloader_pin_memory,
                                persistent_workers=args.dataloader_persistent_workers,
                                prefetch_factor=args.dataloader_prefetch_factor)
            if self._block_stream.per_process:  # each process reads its own part: placed on the device, not split
                loader = prepare_data_loader(loader, args.device, num_processes=1, process_index=0, put_on_device=True,
                                             dispatch_batches=False, non_blocking=self.accelerator.non_blocking)
            else:
                loader = self.accelerator.prepare(loader)
        loader.worker_init_fn = IgnoreSignalsInWorker(self._preemption.signals, loader.worker_init_fn)
        return loader

    if hasattr(Trainer, "get_resumed_dataloader"):  # transformers >= 5.25
        def get_resumed_dataloader(self, dataloader: DataLoader, num_batches: int) -> DataLoader:
            """The loader as it is where the stream starts at the resumed step; else Trainer's replay."""
            return dataloader if self._stream_placed else super().get_resumed_dataloader(dataloader, num_batches)
    else:
        def _run_epoch(self, **kwargs):
            """Trainer's pass over the loader, with nothing to skip where the stream starts at the resumed step (the
            logged epoch comes from the step, in `log`)."""
            if self._stream_placed and kwargs["epoch"] == kwargs["epochs_trained"]:
                kwargs["steps_trained_in_current_epoch"] = 0
            return super()._run_epoch(**kwargs)

    def _any_process(self, flag) -> bool:
        """Whether `flag` (a bool or a 0-d tensor) is set on any process; every process must call it."""
        return bool(self.accelerator.reduce(torch.as_tensor(flag, dtype=torch.float32, device=self.args.device), "sum"))

    def _rows_per_step(self) -> int:  # data rows in one optimizer step, over all devices
        return self.args.gradient_accumulation_steps * self._train_batch_size * self.args.world_size

    # ---- loss ----

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        """`Trainer.get_batch_samples`, each batch checked against its step's phase (`phase.check_batch_phase`); the
        first optimizer step after a log opens the throughput window."""
        if self._throughput is not None:
            self._throughput.begin_step(self.state.num_input_tokens_seen)
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        for batch in batch_samples if self.args.superposition_steps else []:
            check_batch_phase("bag_labels" in batch, self.state.global_step + 1, self.args.superposition_steps)
        return batch_samples, num_items_in_batch

    def training_step(self, model, inputs, num_items_in_batch=None):
        """`Trainer.training_step`; its model FLOPs go to the throughput meter and, from the switch until
        recovery, its loss to the switch watch."""
        if self._throughput is not None:
            rows, length = inputs["input_ids"].shape
            superposed = "bag_labels" in inputs and self.args.tst_superpose != "output"
            self._throughput.add_micro_batch(rows, length // self.args.tst_bag_size if superposed else length)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._guard is not None and self._guard.take_skip():
            drop_step_gradients(model, under_grad_scaler=self.accelerator.scaler is not None)
        if self._switch_watch is not None and self._switch_watch.watches(self.state.global_step):
            self._switch_watch.add_micro_batch(loss)
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Multi-hot cross-entropy for bagged batches, standard causal-LM loss for plain ones. In training,
        both come from the fused LM head when the model allows it (the logits are never materialised), and
        a non-finite loss is caught before its backward (`hf_tst.guard`)."""
        result = self._compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training and not return_outputs and self._guard is not None:
            self._guard.check(result, self.accelerator.sync_gradients, self.state.global_step + 1)
        return result

    def _compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        bagged = "bag_labels" in inputs
        fused_head = self._fused_lm_head(model) if model.training and not return_outputs else None
        if not bagged and fused_head is None:
            self.loss_is_scaled_for_ga = None  # let Trainer decide, as for any plain step
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        inputs = dict(inputs)
        if bagged:
            targets, weighting = inputs.pop("bag_labels"), self.args.tst_weighting
        else:  # next-token prediction is MCE with bags of one token
            targets, weighting = next_tokens_targets(inputs.pop("labels"), 1), "uniform"
        kernel = self.args.tst_loss_kernel
        running = fused_head.running(fused_head.multi_hot_loss(targets, weighting, kernel)) if fused_head else None
        with running or contextlib.nullcontext():
            outputs = self._forward(model, inputs, bagged)
        if fused_head:
            loss = fused_head.result()
        else:
            loss = multi_hot_cross_entropy(outputs.logits, targets, weighting, reduction="sum", kernel=kernel)
        if num_items_in_batch is None:  # called outside the training loop: a plain mean
            loss = loss / valid_target_weights(targets, weighting).sum()
        else:  # divided by the weight mass of the whole optimizer step
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # devices' gradients are averaged, not summed
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        return (loss, outputs) if return_outputs else loss

    def _forward(self, model, inputs: dict, bagged: bool):
        """The model on a batch: on the bags of its tokens when the batch is bagged and the input superposed."""
        if not bagged or self.args.tst_superpose == "output":
            return model(**inputs)
        input_ids, attention_mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
        unwrapped = self.accelerator.unwrap_model(model)
        self._superposition = EmbeddingSuperposition.for_model(unwrapped, self._superposition)
        return self._superposition.forward(
            model, input_ids, attention_mask, self.args.tst_bag_size, **inputs)

    def _fused_lm_head(self, model) -> FusedLMHead | None:
        """The fused LM head of `model`, or None where it cannot serve: turned off, or logits that are not
        the head's output. Under FSDP and ZeRO-3 it computes the loss inside the head's forward, where the
        sharded weight is gathered. Decided once per head, with a warning when it falls back."""
        if not self.args.tst_fused_lm_head:
            return None
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        sharded = self.is_fsdp_enabled or getattr(plugin, "zero_stage", None) == 3
        self._fused_head = fused_head_for(self.accelerator.unwrap_model(model), self._fused_head, sharded)
        return self._fused_head[1]

    def _get_num_items_in_batch(self, batch_samples, device):
        """For bagged batches: the weight mass of all valid targets of the optimizer step, the
        denominator that makes accumulated MCE exact (Trainer would count `labels[..., 1:]`)."""
        if not batch_samples or "bag_labels" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        mass = sum(valid_target_weights(b["bag_labels"], self.args.tst_weighting).sum() for b in batch_samples)
        mass = mass.to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            mass = self.accelerator.gather(mass).sum()
        return mass

    # ---- publishing ----

    def _save_checkpoint(self, model, trial):
        """Trainer's checkpoint with the data stream's position, made whole (`resume.save_checkpoint_whole`), plus,
        when pushing to the Hub, the switch checkpoint on its own revision."""
        step = self.state.global_step
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{step}")
        save_checkpoint_whole(self, folder, lambda: super(TSTTrainer, self)._save_checkpoint(model, trial))
        at_switch = self.args.superposition_steps and step == self.args.superposition_steps
        if at_switch and self.args.push_to_hub and self.is_world_process_zero():
            push_phase_switch_checkpoint(self.hub_model_id, folder, step, self.args.hub_token)

    def create_model_card(self, license: str | None = None, model_name: str | None = None,
                          dataset: str | list[str] | None = None, **kwargs) -> None:
        """The TST model card (README.md and loss curve) in `output_dir`, also used by `push_to_hub`."""
        if self.is_world_process_zero():
            write_model_card(self.args.output_dir, self.args, self.state.log_history,
                             type(self.accelerator.unwrap_model(self.model)).__name__,
                             model_name=model_name or self.args.hub_model_id, license=license or "apache-2.0",
                             dataset=dataset if isinstance(dataset, str) or dataset is None else ", ".join(dataset))

    # ---- logging ----

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs also carry numbers that trackers plot: `tst_bag_size` (s in superposition, 1 in
        recovery and in plain runs), `mce_loss` (the superposition phase's loss), the throughput figures
        of `hf_tst.throughput` (`tst_seconds_per_step`, `tst_data_tokens_per_second`, `tst_tflops_per_device`,
        `tst_mfu`, on CUDA `tst_peak_memory_gib`) and the switch figures of `hf_tst.switch` once measured;
        and `tst_phase`, a string for the console.
        `epoch` is a function of the step, as the phase is, so it goes on rising across a resume: passes over
        map-style data (Trainer, which sees an endless stream, would count steps), and for a stream the fraction
        of `max_steps` done, as Trainer counts a stream's epoch."""
        if self._block_stream is not None:
            self.state.epoch = (self._block_stream.epochs_read(self.state.global_step * self._rows_per_step())
                                if self._block_stream.is_map_style else self.state.global_step / self.args.max_steps)
        if "loss" in logs:
            superposed = in_superposition(self.state.global_step, self.args.superposition_steps)
            logs["tst_bag_size"] = self.args.tst_bag_size if superposed else 1
            if self.args.superposition_steps > 0:
                logs["tst_phase"] = phase_name(self.state.global_step, self.args.superposition_steps)
            if superposed:
                logs["mce_loss"] = logs["loss"]
            if self.args.tst_skip_nonfinite_steps and self._guard is not None:
                logs["tst_skipped_steps"] = self._guard.skipped_steps
            if self._throughput is not None:
                tracked = self.args.include_num_input_tokens_seen not in ("no", False)
                logs.update(self._throughput.end_window(self.state.num_input_tokens_seen if tracked else None))
        if self._switch_watch is not None:
            logs.update(self._switch_watch.pop_unlogged())
        super().log(logs, start_time)
