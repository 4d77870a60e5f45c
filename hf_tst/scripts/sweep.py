"""An (s, r) grid of TST runs against one baseline, like the paper's Table 4: final eval loss of each.

    hf-tst sweep --config recipes/configs/tiny.yaml --bag_sizes 2 4 6 8 --ratios 0.2 0.3 0.4 \\
        [--sweep_dir outputs/sweep] [--field value ...]

Writes SWEEP_DIR/sweep.md (the table, with each cell's difference from the baseline), sweep.json and
heatmap.png (the `plots` extra). Every run shares the config and the number of steps, so all are
equal-FLOPs.
"""

import json
import os
import sys
from dataclasses import dataclass, field

from ..arguments import TRAINING_ARGUMENTS
from ..extras import pyplot, require
from ..parser import TSTParser
from ..pretraining import train_variant


@dataclass
class SweepArguments:
    _argument_group_name = "sweep"

    bag_sizes: list[int] = field(default_factory=lambda: [2, 4, 6, 8], metadata={"help": "Bag sizes s of the grid."})
    ratios: list[float] = field(default_factory=lambda: [0.2, 0.3, 0.4],
                                metadata={"help": "Superposition ratios r of the grid."})
    sweep_dir: str = field(default="outputs/sweep", metadata={"help": "Where the runs and the table go."})


def make_parser(prog: str | None = None) -> TSTParser:
    return TSTParser((SweepArguments, *TRAINING_ARGUMENTS), prog=prog, description=__doc__)


def table(losses: dict[tuple[int, float], float], baseline: float, bag_sizes: list[int], ratios: list[float]) -> str:
    lines = [f"Final eval loss; baseline (tst_ratio 0): **{baseline:.4f}**. Lower is better; "
             "in brackets, the difference from the baseline.", "",
             "| s \\ r | " + " | ".join(f"{r:g}" for r in ratios) + " |", "|---" * (len(ratios) + 1) + "|"]
    for s in bag_sizes:
        cells = [f"{losses[s, r]:.4f} ({losses[s, r] - baseline:+.4f})" for r in ratios]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_heatmap(losses, baseline: float, bag_sizes: list[int], ratios: list[float], path: str) -> None:
    plt = pyplot("the sweep heatmap")
    grid = [[losses[s, r] for r in ratios] for s in bag_sizes]
    figure, axis = plt.subplots(figsize=(1.6 * len(ratios) + 2, 0.8 * len(bag_sizes) + 1.5))
    image = axis.imshow(grid, cmap="viridis_r", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            axis.text(j, i, f"{value:.3f}", ha="center", va="center", color="white")
    axis.set(xticks=range(len(ratios)), xticklabels=[f"{r:g}" for r in ratios], xlabel="r (tst_ratio)",
             yticks=range(len(bag_sizes)), yticklabels=bag_sizes, ylabel="s (tst_bag_size)",
             title=f"final eval loss (baseline {baseline:.3f})")
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser(prog)
    own = parser.parse_args_and_config(argv)[0]
    require("matplotlib", "plots", "hf-tst sweep's heatmap")
    bag_sizes, ratios = own.bag_sizes, own.ratios

    def run(output_dir: str, **overrides) -> float:
        return train_variant(parser, argv, os.path.join(own.sweep_dir, output_dir), **overrides)["eval_loss"]

    baseline = run("baseline", tst_ratio=0)
    losses = {(s, r): run(f"s{s}-r{r:g}", tst_bag_size=s, tst_ratio=r) for s in bag_sizes for r in ratios}
    text = table(losses, baseline, bag_sizes, ratios)
    with open(os.path.join(own.sweep_dir, "sweep.md"), "w") as f:
        f.write(text)
    with open(os.path.join(own.sweep_dir, "sweep.json"), "w") as f:
        json.dump({"baseline": baseline, "runs": [{"s": s, "r": r, "eval_loss": loss}
                                                  for (s, r), loss in losses.items()]}, f, indent=2)
    plot_heatmap(losses, baseline, bag_sizes, ratios, os.path.join(own.sweep_dir, "heatmap.png"))
    print(f"{text}\nsweep.md, sweep.json and heatmap.png in {own.sweep_dir}")
    return {"baseline": baseline, "losses": losses}
