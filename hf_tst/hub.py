"""Publishing TST checkpoints: a Hub-valid model card (the run's TST settings, per-phase steps and
data tokens, the equal-FLOPs context, the eval table, a loss-curve image), the push of the
checkpoint taken at the phase switch to a revision of its own, and the upload of a finished run.

Hub calls go through transformers' shared client (`transformers.utils.hub.hf_api()`), the one
`Trainer.push_to_hub` uses, so a single substitution intercepts every upload in tests."""

import math
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import hub as transformers_hub
from transformers.utils import logging

from .extras import pyplot
from .switch import describe_switch, switch_figures

TEMPLATE = Path(__file__).parent / "resources" / "tst_model_card.md"
logger = logging.get_logger(__name__)

LOSS_CURVE = "loss_curve.png"
TAGS = ["token-superposition-training", "hf_tst", "text-generation"]
PHASE_SWITCH_REVISION = "tst-phase-switch"
# Kept local: training state, not the model (the data stream's position included).
TRAINING_STATE_FILES = ["optimizer.pt", "scheduler.pt", "rng_state*", "tst_data_state-*", "tst_checkpoint.json", "_*"]


def push_output_dir(output_dir: str, repo_id: str, revision: str | None = None, private: bool = False,
                    token: str | None = None):
    """Upload a finished run's `output_dir` (model, tokenizer, card, loss curve) to `repo_id`, on
    `revision` when given (the branch is created if missing); checkpoints and training state stay local."""
    client = transformers_hub.hf_api()
    repo_id = client.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    if revision:
        client.create_branch(repo_id=repo_id, branch=revision, exist_ok=True, token=token)
    return client.upload_folder(repo_id=repo_id, folder_path=output_dir, revision=revision, token=token,
                                commit_message="Upload TST model",
                                ignore_patterns=[*TRAINING_STATE_FILES, f"{PREFIX_CHECKPOINT_DIR}-*"])


def push_phase_switch_checkpoint(repo_id: str, checkpoint_folder: str, step: int, token: str | None = None):
    """Upload the model of the checkpoint taken at the phase switch to the `tst-phase-switch` branch:
    the model after superposition, before recovery (the one the paper resumed from)."""
    client = transformers_hub.hf_api()
    client.create_branch(repo_id=repo_id, branch=PHASE_SWITCH_REVISION, token=token, exist_ok=True)
    return client.upload_folder(repo_id=repo_id, folder_path=checkpoint_folder, revision=PHASE_SWITCH_REVISION,
                                commit_message=f"TST phase switch: end of the superposition phase (step {step})",
                                ignore_patterns=TRAINING_STATE_FILES, token=token)


def phase_tokens(log_history: list[dict], superposition_steps: int) -> tuple[int, int]:
    """Data tokens read in each phase, from the logged `num_input_tokens_seen` at the switch and at the end."""
    seen = {log["step"]: log["num_input_tokens_seen"] for log in log_history if "num_input_tokens_seen" in log}
    if not seen:
        return 0, 0
    at_switch = max((tokens for step, tokens in seen.items() if step <= superposition_steps), default=0)
    return at_switch, max(seen.values()) - at_switch


def plot_loss_curves(log_history: list[dict], superposition_steps: int, path: str) -> None:
    plt = pyplot("the model card's loss curve")

    figure, axis = plt.subplots(figsize=(7, 4))
    for key, label in (("loss", "training loss"), ("eval_loss", "held-out next-token loss")):
        points = [(log["step"], log[key]) for log in log_history if key in log]
        if points:
            axis.plot(*zip(*points, strict=True), marker="." if key == "eval_loss" else None, label=label)
    if superposition_steps:
        axis.axvline(superposition_steps, linestyle="--", color="grey", label="phase switch")
    axis.set(xlabel="optimizer step", ylabel="loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_model_card(output_dir: str, args, log_history: list[dict], architecture: str, model_name: str | None = None,
                     dataset: str | None = None, license: str = "apache-2.0") -> ModelCard:
    """Render the model card into `output_dir/README.md`, and its loss curve beside it when matplotlib
    (the `plots` extra) is installed; a curve that cannot be drawn leaves the card saying why."""
    model_name = model_name or os.path.basename(os.path.normpath(output_dir))
    eval_loss = next((log["eval_loss"] for log in reversed(log_history) if "eval_loss" in log), None)
    steps = max((log.get("step", 0) for log in log_history), default=0)
    superposition_steps = min(args.superposition_steps, steps)
    superposition_tokens, recovery_tokens = phase_tokens(log_history, superposition_steps)
    plain_tokens_per_step = recovery_tokens / (steps - superposition_steps) if steps > superposition_steps else None
    loss_curve, no_curve = LOSS_CURVE, None
    try:
        plot_loss_curves(log_history, superposition_steps, os.path.join(output_dir, LOSS_CURVE))
    except ImportError:  # matplotlib is an extra
        loss_curve = None
        no_curve = 'matplotlib was not installed when this card was written (`pip install "hf_tst[plots]"`)'
    except Exception as error:  # noqa: BLE001 - a card without its picture is better than no card
        loss_curve, no_curve = None, f"drawing it failed ({type(error).__name__}: {error})"
        logger.warning(f"the model card in {output_dir} has no loss curve: {no_curve}.")

    card_data = ModelCardData(
        license=license, library_name="transformers", pipeline_tag="text-generation", tags=TAGS,
        datasets=[dataset] if dataset else None, model_name=model_name,
        eval_results=None if eval_loss is None else [EvalResult(
            task_type="text-generation", dataset_type=dataset or "held-out", dataset_name=dataset or "held-out",
            metric_type="loss", metric_name="next-token eval loss", metric_value=round(eval_loss, 4))])
    eval_rows = [] if eval_loss is None else [("eval loss (nats/token)", f"{eval_loss:.4f}"),
                                               ("perplexity", f"{math.exp(eval_loss):.2f}")]
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE), model_name=model_name, architecture=architecture,
        superposition_steps=superposition_steps, recovery_steps=steps - superposition_steps,
        superposition_tokens=f"{superposition_tokens:,}", recovery_tokens=f"{recovery_tokens:,}",
        total_tokens=f"{superposition_tokens + recovery_tokens:,}",
        baseline_tokens=f"{round(plain_tokens_per_step * steps):,}" if plain_tokens_per_step else "n/a",
        bag_size=args.tst_bag_size, ratio=args.tst_ratio, weighting=args.tst_weighting, superpose=args.tst_superpose,
        max_steps=args.max_steps, learning_rate=args.learning_rate, scheduler=str(args.lr_scheduler_type.value),
        eval_rows=eval_rows, loss_curve=loss_curve, no_curve=no_curve,
        switch=describe_switch(switch_figures(log_history), superposition_steps) if superposition_steps else "")
    card.save(os.path.join(output_dir, "README.md"))
    return card
