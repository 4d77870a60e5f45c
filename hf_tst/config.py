"""`TSTConfig`: the `TrainingArguments` of a Token-Superposition Training run.

TST (the README's "TST in a few lines") trains the first `round(tst_ratio * max_steps)` optimizer steps on bags of
`tst_bag_size` tokens (the superposition phase), and the rest as plain next-token prediction
(the recovery phase). Everything else — optimizer, schedule, parallelism — is the ordinary
`TrainingArguments`.
"""

import copy
import math
import signal
import warnings
from dataclasses import dataclass, field, fields

import torch
from transformers import TrainingArguments
from transformers.trainer_pt_utils import AcceleratorConfig
from transformers.utils import logging

from .errors import UsageError
from .extras import require
from .loss import KERNELS, WEIGHTINGS
from .phase import superposition_steps

logger = logging.get_logger(__name__)

SUPERPOSE_MODES = ("full", "input", "output")
FOLDS = ("sequence", "batch")


def accelerator_count() -> int:
    """The devices of this machine's accelerator (CUDA, XPU, MPS, ...): 0 on a CPU-only machine."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.device_count() if accelerator is not None else torch.cuda.device_count()


@dataclass(repr=False)  # keep TrainingArguments.__repr__, which hides the *_token fields
class TSTConfig(TrainingArguments):
    r"""`TrainingArguments` of a Token-Superposition Training run, for `TSTTrainer`.

    Every `TrainingArguments` field works as documented there; these are added:

    - `tst_bag_size` (`int`, default 6): tokens per bag s; 1 disables superposition.
    - `tst_ratio` (`float`, default 0.3): fraction r of `max_steps` in the superposition phase;
      0 trains a plain baseline with the same everything else.
    - `tst_weighting` (default `"uniform"`): MCE weights of a bag's targets.
    - `tst_superpose` (default `"full"`): which side is bagged; `"input"`/`"output"` are ablations.
    - `tst_fold` (default `"sequence"`): how a superposition step spends a plain step's compute.
    - `tst_contiguous_rows` (default `True`): a superposition row is s consecutive blocks.
    - `tst_fused_lm_head` (default `True`): LM head and loss computed together, chunk by chunk.
    - `tst_loss_kernel` (default `"eager"`): how the loss's chunks run (`"compiled"`, `"liger"`).
    - `tst_peak_tflops` (default `None`: looked up for known GPUs): a device's peak, for the logged MFU.
    - `tst_skip_nonfinite_steps` (default `False`): skip a step with a NaN/Inf loss instead of stopping.
    - `tst_allow_changed_settings` (default `False`): resume under other TST settings.
    - `tst_resume_without_optimizer` (default `False`): resume a checkpoint without optimizer state.
    - `tst_save_on_signal` (default SIGTERM, SIGUSR1): save and exit with status 75 on these signals.

    Defaults changed from `TrainingArguments`:

    - `include_num_input_tokens_seen="non_padding"` (was `"no"`): the data tokens read, all s of a
      bag counted, are the axis on which TST and its baseline differ.
    - `dataloader_pin_memory` is off on a machine without an accelerator, where there is no device to
      copy pinned batches to (the DataLoader would warn on every run and not pin).
    - `accelerator_config={"non_blocking": True}` when unset and `dataloader_pin_memory` is on: pinned
      batches are copied to the device without waiting, since a superposition batch is s times the
      data of a plain one.

    The switch falls at step `round(r * max_steps)`. An epoch-based run (`num_train_epochs`, no
    `max_steps`) of a map-style dataset takes `max_steps` from the step count a plain `Trainer` would
    compute for it (`epoch_steps`), set by `TSTTrainer.train()` before the first step: TST runs the
    baseline's number of steps, and reads more data in them. The README's "TST in a few lines"
    describes the method.

    The representation (`repr`, `str`), `to_dict` and trackers show `*_token` fields as `<HUB_TOKEN>`, and
    pickles (`training_args.bin`) hold None there.
    """

    _argument_group_name = "training (transformers' TrainingArguments)"  # its heading in --help, after the tst_*

    tst_bag_size: int = field(
        default=6,
        metadata={"help": "Tokens per bag (s). Each superposition step reads s times the data of a plain step. "
                          "The paper recommends 4-8 (best dense setting 6); 1 disables superposition."},
    )
    tst_ratio: float = field(
        default=0.3,
        metadata={"help": "Fraction r of `max_steps` spent in the superposition phase; the switch happens at "
                          "step round(r * max_steps). The paper recommends 0.2-0.4; 0 disables TST, 1 leaves no "
                          "recovery phase (the model will not generate sensibly)."},
    )
    tst_weighting: str = field(
        default="uniform",
        metadata={"choices": tuple(WEIGHTINGS),
                  "help": f"Weights of the s targets of a bag in the multi-hot cross-entropy: one of "
                          f"{', '.join(WEIGHTINGS)}. Uniform was best at s=4, power_law for s>=8."},
    )
    tst_superpose: str = field(
        default="full",
        metadata={"choices": SUPERPOSE_MODES,
                  "help": "Which side is superposed: 'full' (bagged input, next-bag target; the method), "
                          "'input' (bagged input, next-token target) or 'output' (plain input, next-bag target); "
                          "the last two are the paper's ablations."},
    )
    tst_fold: str = field(
        default="sequence",
        metadata={"choices": FOLDS,
                  "help": "How a superposition step spends a plain step's compute on s times the data: 'sequence' "
                          "(the paper: rows of s*L tokens folded to L positions) or 'batch' (rows of L tokens folded "
                          "to L/s positions, s times as many rows per micro-batch: the same linear-layer FLOPs and "
                          "cheaper attention; its s blocks are drawn at random, where sequence folding reads s "
                          "consecutive blocks)."},
    )
    tst_contiguous_rows: bool = field(
        default=True,
        metadata={"help": "With sequence folding on a map-style dataset, a superposition row is s consecutive blocks "
                          "of the dataset (L*s contiguous tokens: the paper's data sequences), rows in a shuffled "
                          "order; pack the corpus in order and let TSTTrainer shuffle. False draws the s blocks of a "
                          "row at random. Streaming datasets always keep their own order."},
    )
    tst_fused_lm_head: bool = field(
        default=True,
        metadata={"help": "In training, compute the LM head and the loss together, one chunk of positions at a time, "
                          "so the (positions x vocabulary) logits are never materialised; both phases. Used when the "
                          "model's logits are its nn.Linear head's output (soft-capping included); under FSDP and "
                          "ZeRO-3 it runs inside the head's forward, where the weight is gathered. Otherwise, or "
                          "when False, the model's own logits are used."},
    )
    tst_loss_kernel: str = field(
        default="eager",
        metadata={"choices": KERNELS,
                  "help": "How each chunk of the fused loss's arithmetic runs: 'eager' (PyTorch ops), 'compiled' "
                          "(the same function compiled by torch.compile into fused kernels: Triton on CUDA), or "
                          "'liger' ('eager', with the recovery phase's cross-entropy on Liger Kernel's fused linear "
                          "cross-entropy on CUDA; the gpu extra). benchmarks/loss.py measures them."},
    )
    tst_peak_tflops: float | None = field(
        default=None,
        metadata={"help": "Peak dense bf16 TFLOP/s of one device, the denominator of the logged MFU (`tst_mfu`). "
                          "Default: looked up for NVIDIA A100, H100, H200 and B200; elsewhere (CPU included) MFU is "
                          "not logged unless this is set. The achieved TFLOP/s (`tst_tflops_per_device`) is always "
                          "logged."},
    )
    tst_skip_nonfinite_steps: bool = field(
        default=False,
        metadata={"help": "On a NaN or infinite training loss, skip that optimizer step (no parameter changes; "
                          "counted as `tst_skipped_steps` in the logs) instead of stopping the run. Off by default: "
                          "the run stops before the step, naming it and the last complete checkpoint. Not with "
                          "DeepSpeed, which steps the optimizer inside backward."},
    )
    tst_allow_changed_settings: bool = field(
        default=False,
        metadata={"help": "Resume from a checkpoint written with other TST settings (bag size, ratio, max_steps, "
                          "superpose mode, rows per step). Off by default: these place the phase switch and the "
                          "data position, so a changed value silently breaks the run's data accounting."},
    )
    tst_resume_without_optimizer: bool = field(
        default=False,
        metadata={"help": "Resume from a checkpoint that holds no optimizer or scheduler state (saved with "
                          "save_only_model): the weights carry on, AdamW's moments and the learning-rate schedule "
                          "start from zero. Off by default: such a checkpoint is refused, naming what it lacks."},
    )
    tst_save_on_signal: list[str] = field(
        default_factory=lambda: ["SIGTERM", "SIGUSR1"],
        metadata={"help": "Signals (names) on which the run finishes its optimizer step, saves a complete checkpoint "
                          "and exits with status 75 to be requeued, as SLURM's SIGTERM or --signal ask before a job "
                          "is killed; every process agrees through one all-reduce per step. Pass none to leave "
                          "signals to their defaults."},
    )
    include_num_input_tokens_seen: str = field(
        default="non_padding",
        metadata={"help": "Track data tokens seen (logged as `num_input_tokens_seen`): in a superposition step "
                          "this counts all s tokens of every bag. One of 'all', 'non_padding', 'no'."},
    )

    def __post_init__(self):
        self._validate_sizes()
        self._validate_tst_fields()
        accelerator_config_unset = self.accelerator_config is None
        self.dataloader_pin_memory = self.dataloader_pin_memory and accelerator_count() > 0
        super().__post_init__()
        if accelerator_config_unset and self.dataloader_pin_memory:  # copied while the last step runs
            self.accelerator_config.non_blocking = True

    def _validate_sizes(self) -> None:
        """Refuse sizes that cannot train (transformers would divide by them, or the DataLoader refuse them later)."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name}={getattr(self, name)}: it must be at least 1.")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UsageError(f"max_steps={self.max_steps}: give a positive number of optimizer steps, or -1 to train "
                             "for num_train_epochs.")
        for kind in ("eval", "save", "logging"):  # each interval counts only under its strategy "steps"
            steps, strategy = getattr(self, f"{kind}_steps"), getattr(self, f"{kind}_strategy")
            if getattr(strategy, "value", strategy) == "steps" and steps is not None and steps <= 0:
                raise UsageError(f"{kind}_steps={steps}: it must be positive (a number of steps, or below 1 a "
                                 f"fraction of the run's steps) while {kind}_strategy is 'steps'.")

    def _validate_tst_fields(self) -> None:
        """Refuse a bad TST setting before any model or data is loaded."""
        if isinstance(self.tst_bag_size, bool) or not isinstance(self.tst_bag_size, int) or self.tst_bag_size < 1:
            raise UsageError(f"tst_bag_size must be an integer >= 1, got {self.tst_bag_size!r}; "
                             "use 4-8 for TST or 1 to disable superposition.")
        if not 0.0 <= self.tst_ratio <= 1.0:
            raise UsageError(f"tst_ratio must lie in [0, 1], got {self.tst_ratio!r}; the paper uses 0.2-0.4.")
        for spec in fields(self):  # the fields that list their choices (--help shows them too)
            choices, value = spec.metadata.get("choices"), getattr(self, spec.name)
            if spec.name.startswith("tst_") and choices and value not in choices:
                raise UsageError(f"{spec.name}={value!r} is unknown; choose one of {', '.join(choices)}.")
        if self.tst_loss_kernel == "liger":
            require("liger_kernel", "gpu", "tst_loss_kernel='liger'")
        self.tst_save_on_signal = [name for name in self.tst_save_on_signal if name.lower() != "none"]
        unknown = [name for name in self.tst_save_on_signal if name not in signal.Signals.__members__]
        if unknown:
            raise UsageError(f"tst_save_on_signal names {', '.join(unknown)}, not signals; use names such as "
                             "SIGTERM and SIGUSR1, or none.")
        if self.tst_peak_tflops is not None and not self.tst_peak_tflops > 0:
            raise UsageError(f"tst_peak_tflops must be > 0, got {self.tst_peak_tflops!r}; pass the device's peak "
                             "dense bf16 TFLOP/s (e.g. 989 for an H100) or leave it unset.")
        if self.tst_fold == "batch" and self.tst_superpose == "output":
            raise UsageError("tst_fold='batch' folds the input, but tst_superpose='output' leaves it unbagged; use "
                             "tst_fold='sequence' with the output-only ablation.")
        if self.tst_ratio > 0 and self.max_steps > 0:
            self.check_switch()
        if self.tst_ratio > 0 and self.train_sampling_strategy not in ("random", "sequential"):
            raise UsageError(f"train_sampling_strategy={self.train_sampling_strategy!r} does not apply to TST, which "
                             "reads packed blocks as one stream; use 'random' (default) or 'sequential'.")
        if self.use_liger_kernel and self.tst_loss_kernel != "liger":
            raise UsageError(f"use_liger_kernel=True asks for Liger's fused cross-entropy, but TST computes its own "
                             f"loss with tst_loss_kernel={self.tst_loss_kernel!r}; set tst_loss_kernel='liger' as well "
                             "(Liger's kernels for the model's layers and for the recovery loss), or "
                             "use_liger_kernel=False.")
        if self.tst_ratio == 1.0:
            warnings.warn("tst_ratio=1 leaves no recovery phase: the model is never trained on single tokens "
                          "and will not generate sensibly (the paper found r=1 unusable).", stacklevel=3)

    def __getstate__(self) -> dict:
        """What pickling stores, and so `training_args.bin` (`torch.save` of the arguments) in the output
        folder, every checkpoint and every upload: every field but the credentials (`*_token`, the fields
        `to_dict` redacts for trackers), which come back as None. A resumed run takes its token from the
        command line or the environment (`HF_TOKEN`), never from disk."""
        return {name: None if name.endswith("_token") else value for name, value in self.__dict__.items()}

    def __copy__(self) -> "TSTConfig":
        """A copy in memory keeps the credentials that pickling leaves out."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict) -> "TSTConfig":
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def check_switch(self) -> None:
        """Refuse a `tst_ratio` that, with `max_steps`, leaves no superposition step."""
        if self.tst_ratio > 0 and self.superposition_steps == 0:
            raise UsageError(f"tst_ratio={self.tst_ratio} x max_steps={self.max_steps} rounds to 0 superposition "
                             "steps; raise tst_ratio or max_steps, or set tst_ratio=0 to train without TST.")

    def place_switch(self, examples: int | None) -> None:
        """For an epoch-based run (`num_train_epochs`, no `max_steps`) with a superposition phase, over a
        map-style dataset of `examples` rows: set `max_steps` to the step count a plain `Trainer` computes
        for it (`epoch_steps`), so the switch falls at `round(tst_ratio * max_steps)` as in a `max_steps`
        run of that length. `TSTTrainer.train()` calls it before the first step."""
        if self.max_steps > 0 or self.tst_ratio == 0:
            return
        if examples is None:
            raise UsageError(f"tst_ratio={self.tst_ratio} places the phase switch at a fraction of the run's steps, "
                             "which a streaming (or missing) train_dataset does not give; set max_steps.")
        self.max_steps = epoch_steps(examples, self)
        self.check_switch()
        logger.info(f"TSTConfig: {self.num_train_epochs:g} epochs of {examples:,} rows are {self.max_steps} steps; "
                    f"superposition for the first {self.superposition_steps}.")

    @classmethod
    def from_training_arguments(cls, args: TrainingArguments, **tst_fields) -> "TSTConfig":
        """A `TSTConfig` with every `TrainingArguments` field of `args`, the given `tst_*` fields and
        the TST defaults for the rest; where `args` holds `TrainingArguments`' own default of a field
        whose default TST changes (data-token tracking, non-blocking copies), TST's applies."""
        values = {f.name: getattr(args, f.name) for f in fields(TrainingArguments) if f.init}
        if values["include_num_input_tokens_seen"] in ("no", False):
            values["include_num_input_tokens_seen"] = "non_padding"
        if values["accelerator_config"] == AcceleratorConfig():
            values["accelerator_config"] = None
        return cls(**values, **tst_fields)

    @property
    def superposition_steps(self) -> int:
        """Optimizer steps in the superposition phase (see `superposition_steps`)."""
        return superposition_steps(self.tst_ratio, self.max_steps)


def as_tst_config(args: TrainingArguments | None) -> TSTConfig:
    """`args` as a `TSTConfig`: unset gives the defaults, a plain `TrainingArguments` is converted (with a
    warning naming the TST defaults it gets)."""
    if args is None:
        return TSTConfig(output_dir="tmp_trainer")
    if isinstance(args, TSTConfig):
        return args
    if not isinstance(args, TrainingArguments):
        raise TypeError(f"args must be a TSTConfig, got {type(args).__name__}; build it like TrainingArguments: "
                        "TSTConfig(output_dir=..., max_steps=..., tst_bag_size=6, tst_ratio=0.3).")
    converted = TSTConfig.from_training_arguments(args)
    logger.warning(f"TSTTrainer: args is a plain {type(args).__name__}, converted to TSTConfig with the TST defaults "
                   f"tst_bag_size={converted.tst_bag_size}, tst_ratio={converted.tst_ratio} and "
                   f"include_num_input_tokens_seen={converted.include_num_input_tokens_seen!r}; pass "
                   "args=TSTConfig(...) to choose them.")
    return converted


def epoch_steps(examples: int, args: TrainingArguments) -> int:
    """The optimizer steps a plain `Trainer` computes for an epoch-based run (`num_train_epochs`, no
    `max_steps`) of a map-style dataset of `examples` rows: batches per process per epoch (partial last
    batch kept unless `dataloader_drop_last`), accumulated into steps (a partial step counts), times the
    epochs, rounded up."""
    rows_per_batch = args.per_device_train_batch_size * args.world_size
    batches = examples // rows_per_batch if args.dataloader_drop_last else math.ceil(examples / rows_per_batch)
    steps_per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.num_train_epochs * steps_per_epoch)
