"""The GPU screen's device path, in its parts (`.ci/device_path.sh` runs it whole in a venv like the device
image): which wheels travel, how many steps the measured speed allows, and the model the screen trains."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")
pytest.importorskip("tomllib", reason="the device scripts read pyproject.toml with Python 3.11's tomllib")
device_wheels = importlib.util.module_from_spec(
    importlib.util.spec_from_file_location("device_wheels", os.path.join(BENCHMARKS, "device_wheels.py")))
device_wheels.__spec__.loader.exec_module(device_wheels)

# The wheel set covers the screen's plots extra, so its walk needs it installed here, as CI's .venv has it.
needs_plots = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                 reason="needs the plots extra: pip install 'hf_tst[plots]'")


def this_environment() -> dict:
    """An image holding exactly what this environment holds: it lacks nothing."""
    return {canonicalize_name(dist.metadata["Name"]): Version(dist.version) for dist in metadata.distributions()
            if dist.metadata["Name"]}


def carried(image: dict) -> tuple[dict, dict]:
    python = "%d.%d" % sys.version_info[:2]
    carry, unverified, _ = device_wheels.wheels_to_carry(image, device_wheels.marker_environment(python))
    return carry, unverified


@needs_plots
def test_an_image_with_the_tested_versions_of_everything_is_carried_nothing():
    assert carried(this_environment()) == ({}, {})


@needs_plots
def test_a_missing_package_travels_alone_when_the_image_meets_its_own_requirements():
    image = this_environment()
    del image["datasets"]
    carry, _ = carried(image)
    assert carry == {"datasets": metadata.version("datasets")}


@needs_plots
def test_too_old_or_older_than_tested_travels_and_the_images_torch_and_numpy_stay():
    image = this_environment()
    tested = {name: Version(metadata.version(name)) for name in ("transformers", "tokenizers")}
    image["transformers"] = Version("5.17.0")  # below hf_tst's transformers>=5.19
    image["tokenizers"] = Version(f"{tested['tokenizers'].major}.{tested['tokenizers'].minor}.0")  # meets, older
    image["numpy"] = Version("2.0.0")  # older than tested: the image's compiled packages are built against it
    image["torch"] = Version("2.4.0")  # the image's CUDA build, older than CI's CPU one
    carry, _ = carried(image)
    expected = {"transformers"} | ({"tokenizers"} if image["tokenizers"] < tested["tokenizers"] else set())
    assert set(carry) == expected
    assert carry["transformers"] == str(tested["transformers"])


@needs_plots
def test_an_image_torch_too_old_for_hf_tst_stops_the_walk_naming_it():
    image = this_environment()
    image["torch"] = Version("2.0.0")  # hf_tst needs torch>=2.4; the image's CUDA build is never carried
    with pytest.raises(SystemExit, match="the image holds torch 2.0.0, which is the image's own build"):
        carried(image)


@needs_plots
def test_a_package_of_unrecorded_version_is_taken_as_met_and_listed_with_what_is_asked_of_it():
    image = this_environment()
    del image["datasets"]  # carried, so its own requirements are walked
    image["pyarrow"] = None
    carry, unverified = carried(image)
    assert carry == {"datasets": metadata.version("datasets")}
    datasets_asks = {str(spec) for text in metadata.requires("datasets") if Requirement(text).name == "pyarrow"
                     for spec in Requirement(text).specifier}
    assert datasets_asks <= unverified["pyarrow"]


class FakeEnvironment:
    """Installed distributions with these versions and requirements, in place of importlib.metadata's."""

    PackageNotFoundError = metadata.PackageNotFoundError

    def __init__(self, versions: dict[str, str], requires: dict[str, list[str]]):
        self.versions, self.requirements = versions, requires

    def version(self, name):
        if name not in self.versions:
            raise metadata.PackageNotFoundError(name)
        return self.versions[name]

    def requires(self, name):
        return self.requirements.get(name, [])


def walk(monkeypatch, roots: list[str], versions: dict, requires: dict) -> dict:
    monkeypatch.setattr(device_wheels, "metadata", FakeEnvironment(versions, requires))
    monkeypatch.setattr(device_wheels, "root_requirements", lambda: [Requirement(text) for text in roots])
    return device_wheels.wheels_to_carry({}, device_wheels.marker_environment("3.12"))[0]


def test_an_extra_asked_after_its_package_is_carried_brings_its_requirements_too(monkeypatch):
    """`app` asks for `lib` plainly and `plugin` for `lib[fast]` afterwards (the walk takes roots last first):
    `lib[fast]`'s `speedups` travels as well, and `speedups`'s own requirement with it."""
    carry = walk(monkeypatch, ["plugin", "app"], {name: "1.0" for name in ("app", "plugin", "lib", "speedups", "rt")},
                 {"app": ["lib"], "plugin": ["lib[fast]"], "lib": ['speedups; extra == "fast"'], "speedups": ["rt"]})
    assert set(carry) == {"app", "plugin", "lib", "speedups", "rt"}


def test_a_later_requirement_the_carried_version_does_not_meet_stops_the_walk_naming_both(monkeypatch):
    with pytest.raises(SystemExit, match="old 1.0 needs lib<1, but lib 2.0 is carried"):
        walk(monkeypatch, ["old", "app"], {"app": "1.0", "old": "1.0", "lib": "2.0"},
             {"app": ["lib"], "old": ["lib<1"]})


def preflight_history(seconds: list[float], bags: list[int], eval_runtime: float) -> list[dict]:
    """Logs every 4 steps, then the final evaluation, as a preflight run writes them."""
    history = [{"step": 4 * (i + 1), "loss": 5.0, "tst_seconds_per_step": s, "tst_bag_size": bag}
               for i, (s, bag) in enumerate(zip(seconds, bags, strict=True))]
    return [*history, {"step": 4 * len(seconds), "eval_loss": 5.0, "eval_runtime": eval_runtime}]


def plan(tmp_path, runs: dict, seconds_left: float) -> subprocess.CompletedProcess:
    """screen_plan.py on preflight runs with these log histories, for the screen's config."""
    for name, history in runs.items():
        os.makedirs(tmp_path / name, exist_ok=True)
        (tmp_path / name / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "screen_plan.py"), "--preflight", str(tmp_path / "baseline"),
         str(tmp_path / "tst"), "--wall", "30", "--seconds_left", str(seconds_left), "--min_steps", "300",
         "--args_out", str(tmp_path / "plan.args"), "--json_out", str(tmp_path / "plan.json"), "--",
         "--config", os.path.join(REPO, "recipes/configs/screen.yaml"), "--use_cpu", "true",
         "--output_dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("seconds_left", [500, 1000])
def test_the_step_count_is_what_the_measured_speed_fits_in_the_time_left(tmp_path, seconds_left):
    """Hand-computed: baseline 0.2 s/step (median after the warm-up window); TST 0.3 x 0.25 + 0.7 x 0.2 = 0.215
    (superposition and recovery medians, each without its first window); at those speeds the preflight's 20 steps
    take 20 x 0.2 = 4.0 s and 8 x 0.25 + 12 x 0.2 = 4.4 s of its 30 s: 25.6 s overhead; 11 evaluations (10 and
    TST's switch) of 3 s; with 500 s left, ((500 - 20) x 0.9 - 25.6 - 33) / 0.215 = 1,736 steps, less the
    planner's own start-up; 1,000 s would fit 3,760, more than the config's 3,000. Warm-up, decay and evaluations
    keep their tenth of the run."""
    result = plan(tmp_path, {"baseline": preflight_history([1.0, 0.2, 0.2, 0.3, 0.2], [1] * 5, 2.0),
                             "tst": preflight_history([1.0, 0.25, 0.5, 0.18, 0.22], [6, 6, 1, 1, 1], 3.0)},
                  seconds_left)
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "plan.json").read_text())
    assert seconds_left - 60 < figures["seconds_left"] < seconds_left  # its own start-up came off
    expected = min(3000, math.floor(((figures["seconds_left"] - 20) * 0.9 - 25.6 - 11 * 3.0) / 0.215))
    assert expected > 1600
    flags = (tmp_path / "plan.args").read_text().split("\n")
    tenth = round(300 * (expected / 3000))  # the config's 300 of 3,000, scaled as the planner scales it
    assert flags[:6] == ["--max_steps", str(expected), "--warmup_steps", str(tenth), "--eval_steps", str(tenth)]
    assert json.loads(flags[7]) == {"num_decay_steps": tenth, "decay_type": "linear"}
    assert figures["seconds_per_step"] == pytest.approx(0.215)
    assert figures["overhead_seconds"] == pytest.approx(25.6)


def test_too_few_steps_for_a_screen_stop_it_with_one_line_naming_the_fix(tmp_path):
    history = preflight_history([1.0, 0.2, 0.2], [6, 6, 1], 3.0)
    result = plan(tmp_path, {"baseline": history, "tst": history}, seconds_left=100)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("screen_plan: stopped before the screen: ")
    assert "SCREEN_SECONDS" in result.stderr
    assert not (tmp_path / "plan.args").exists()


def test_the_screen_model_has_the_replications_shape_and_the_parameters_its_config_states():
    from transformers import AutoTokenizer

    from hf_tst.arguments import ModelArguments
    from hf_tst.modeling import load_model
    from hf_tst.parser import load_yaml_config

    config = load_yaml_config(os.path.join(REPO, "recipes/configs/screen.yaml"))
    model = load_model(ModelArguments(model_config=os.path.join(REPO, config["model_config"]),
                                      config_overrides=config["config_overrides"]),
                       AutoTokenizer.from_pretrained(os.path.join(REPO, config["tokenizer_name"])))
    shape = model.config
    assert (shape.num_hidden_layers, shape.hidden_size, shape.max_position_embeddings) == (12, 512, 2048)
    assert config["block_size"] == 2048 and config["tst_bag_size"] == 6 and config["tst_ratio"] == 0.3
    assert config["max_steps"] == 3000
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 58.7
