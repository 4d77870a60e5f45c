"""Hub publishing through a substituted client: exactly which files go to which repo and revision,
and the pushed folders load as plain transformers models."""

import copy
import importlib.util
import shutil
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import PLOTS, load_recipe, packed_dataset, tiny_llama
from huggingface_hub.utils import filter_repo_objects
from transformers import AutoModelForCausalLM
from transformers.utils import hub as transformers_hub
from transformers.utils import logging as transformers_logging

from hf_tst import TSTTrainer

REPO = Path(__file__).resolve().parents[1]
MODEL_FILES = ["config.json", "generation_config.json", "model.safetensors"]


class FakeHub:
    """Stands in for the Hub client: records every upload and keeps the uploaded files per repo and revision."""

    def __init__(self, root: Path):
        self.root, self.uploads, self.branches = root, [], []

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"someone/{repo_id}")

    def create_branch(self, repo_id, branch, **kwargs):
        self.branches.append((repo_id, branch))

    def upload_folder(self, repo_id, folder_path, path_in_repo=None, revision=None, ignore_patterns=None,
                      allow_patterns=None, run_as_future=False, **kwargs):
        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        kept = sorted(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        target = self.folder(repo_id, revision) / (path_in_repo or "")
        for name in kept:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(folder_path) / name, target / name)
        self.uploads.append((repo_id, revision or "main", path_in_repo, kept))
        commit = SimpleNamespace(commit_url=f"https://hub.test/{repo_id}/commit/{len(self.uploads)}")
        if run_as_future:
            done = Future()
            done.set_result(commit)
            return done
        return commit

    def folder(self, repo_id, revision):
        return self.root / repo_id / (revision or "main")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(transformers_hub, "_hf_api", fake)
    return fake


def test_training_pushes_the_switch_checkpoint_to_its_branch_and_the_final_model_with_its_card(tmp_path, hub,
                                                                                               make_config):
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                         eval_dataset=packed_dataset(8, 16, 97, seed=1),
                         args=make_config(output_dir=str(tmp_path / "out"), max_steps=6, tst_ratio=0.5, tst_bag_size=4,
                                          save_strategy="steps", save_steps=100, eval_strategy="steps", eval_steps=6,
                                          push_to_hub=True, hub_model_id="someone/tiny-tst"))
    trainer.train()
    trainer.push_to_hub()

    assert hub.branches == [("someone/tiny-tst", "tst-phase-switch")]
    switch = [u for u in hub.uploads if u[1] == "tst-phase-switch"]
    assert switch == [("someone/tiny-tst", "tst-phase-switch", None,
                       sorted(MODEL_FILES + ["trainer_state.json", "training_args.bin"]))]
    final = hub.uploads[-1]
    assert final[:3] == ("someone/tiny-tst", "main", None)
    assert {"README.md", *(["loss_curve.png"] if PLOTS else []), *MODEL_FILES} <= set(final[3])
    assert not any(name.startswith("checkpoint-") or "optimizer" in name for name in final[3])

    pushed = AutoModelForCausalLM.from_pretrained(hub.folder("someone/tiny-tst", "main"))
    for p, q in zip(pushed.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(p, q)
    at_switch = AutoModelForCausalLM.from_pretrained(hub.folder("someone/tiny-tst", "tst-phase-switch"))
    assert not torch.equal(next(at_switch.parameters()), next(pushed.parameters()))  # the model before recovery
    assert "token-superposition-training" in (hub.folder("someone/tiny-tst", "main") / "README.md").read_text()


def test_hf_tst_push_uploads_an_existing_output_folder_and_exits_0(tmp_path, make_config):
    """Through `hf-tst`'s entry point in a fresh interpreter (the console script's `sys.exit(main())`), with this
    module's FakeHub in place of the Hub client."""
    out = tmp_path / "out"
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                         args=make_config(output_dir=str(out), max_steps=4, tst_bag_size=4, save_strategy="steps",
                                          save_steps=2))
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()
    console_script = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from pathlib import Path; "
                      "from transformers.utils import hub; from test_hub import FakeHub; "
                      f"hub._hf_api = FakeHub(Path({str(tmp_path / 'hub')!r})); "
                      "from hf_tst.cli import main; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", console_script, "push", str(out), "someone/pushed", "--revision",
                             "v1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == f"pushed {out} (v1): https://hub.test/someone/pushed/commit/1\n"
    pushed = FakeHub(tmp_path / "hub").folder("someone/pushed", "v1")
    assert {path.name for path in pushed.iterdir()} == {"README.md", *(["loss_curve.png"] if PLOTS else []),
                                                        "training_args.bin", *MODEL_FILES}
    AutoModelForCausalLM.from_pretrained(pushed)


SECRET = "hf_tstTestTokenThatMustNeverBeWritten"


def files_holding(root: Path, secret: str) -> list[str]:
    """The files under `root` whose bytes contain `secret`."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and secret.encode() in path.read_bytes())


def test_no_text_form_of_the_arguments_shows_the_token(make_config):
    """`@dataclass` writes a `__repr__` of its own unless told not to; TrainingArguments' hides the token."""
    args = make_config(max_steps=6, hub_token=SECRET)
    forms = {"repr": repr(args), "str": str(args), "f-string": f"{args!r} {args}", "to_dict": str(args.to_dict()),
             "to_json_string": args.to_json_string(), "to_sanitized_dict": str(args.to_sanitized_dict())}
    assert [name for name, text in forms.items() if SECRET in text] == []
    assert "hub_token=<HUB_TOKEN>" in repr(args) and "tst_bag_size=6" in repr(args)


def test_the_hub_token_is_in_no_file_the_run_writes_nor_in_any_upload(tmp_path, hub, make_config, capfd, caplog):
    """A token passed as hub_token (how a cluster job pushes without a login) stays in memory: the output
    folder, its checkpoints (training_args.bin is a pickle of the arguments), the card, the trainer state,
    the tracker's event files (hparams included), everything uploaded (switch branch, final push,
    recipes/push.py) and the run's console and log records hold none of its bytes; the saved arguments
    still load, without it."""
    transformers_logging.set_verbosity_debug()
    transformers_logging.enable_propagation()
    caplog.set_level("DEBUG")
    out = tmp_path / "out"
    trackers = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    trainer = TSTTrainer(model=tiny_llama(), train_dataset=packed_dataset(64, 16, 97),
                         eval_dataset=packed_dataset(8, 16, 97, seed=1),
                         args=make_config(output_dir=str(out), max_steps=6, tst_ratio=0.5, tst_bag_size=4,
                                          save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=3,
                                          push_to_hub=True, hub_model_id="someone/secret-test", hub_token=SECRET,
                                          report_to=trackers))
    trainer.train()
    trainer.save_model()
    trainer.save_state()
    trainer.push_to_hub()
    load_recipe("push").main([str(out), "someone/pushed", "--revision", "v1"])
    assert trainer.args.hub_token == SECRET  # still there for this run's own pushes
    assert copy.copy(trainer.args).hub_token == copy.deepcopy(trainer.args).hub_token == SECRET  # copies in memory
    assert len(list(out.rglob("training_args.bin"))) >= 4 and hub.uploads
    assert files_holding(out, SECRET) == [] and files_holding(hub.root, SECRET) == []
    saved = torch.load(out / "training_args.bin", weights_only=False)
    assert saved.hub_token is None and saved.max_steps == 6 and saved.hub_model_id == "someone/secret-test"
    printed = capfd.readouterr()
    transformers_logging.disable_propagation()
    transformers_logging.set_verbosity_warning()
    assert "Training Arguments" in caplog.text or "***** Running training *****" in caplog.text  # logs were seen
    assert SECRET not in printed.out + printed.err and SECRET not in caplog.text
