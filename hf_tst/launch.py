"""`hf-tst train` under `accelerate launch`: the script's flags read first, the rest passed to the launcher.

The flags that are not the script's go to the launcher (`--num_processes 8`, `--mixed_precision bf16`, ...),
and `--accelerate_config` takes a path or the name of a launch config shipped with hf_tst (ddp, zero2, zero3,
fsdp, multinode). With no launch config (neither that flag, `--config_file`, nor the file `accelerate config`
writes), the launcher settings it would default are passed as accelerate defaults them: a process per GPU (one
on a machine without), one machine, no mixed precision, no dynamo; several processes asked for with
`--num_processes` or `--num_machines` alone get `--multi_gpu` (data parallel, as the `ddp` config), which
accelerate would otherwise drop silently, running one.

Preemption: the signals of `--tst_save_on_signal` (SIGTERM, SIGUSR1) never stop the launcher; it passes them
on to the trainers, waits while they save, and exits with their status 75 (`hf_tst.preemption`). A launched job
that fails has printed its own message; `launch` raises `LaunchedJobFailed` with its status.
"""

import importlib
import os
import subprocess
from importlib import resources
from pathlib import Path

from accelerate.commands.config.config_args import default_config_file
from accelerate.commands.launch import launch_command, launch_command_parser
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from .config import accelerator_count
from .errors import LaunchedJobFailed, UsageError
from .parser import flags_of
from .preemption import signals_left_to_trainers

ACCELERATE_CONFIGS = resources.files("hf_tst") / "resources" / "accelerate"
LAUNCHER_DEFAULTS = {"--num_machines": "1", "--mixed_precision": "no", "--dynamo_backend": "no"}


def launched_status(error: subprocess.CalledProcessError | ChildFailedError) -> int:
    """The status of a launched job that failed (its first process to fail, under torch.distributed), as a
    shell reports it: 75 for a run that saved on a signal and asks to be requeued, 128 + N for signal N."""
    code = (error.returncode if isinstance(error, subprocess.CalledProcessError)
            else error.get_first_failure()[1].exitcode)
    return code if code > 0 else 128 - code if code < 0 else 1


def launch(command: str, argv: list[str]) -> None:
    """Run `hf_tst.scripts.<command>` under `accelerate launch`. The script's parser reads `argv` first
    (so `--help`, bad values and unknown flags stop here, before any process starts); the strings it does
    not know must be the launcher's flags and their values."""
    parser = importlib.import_module(f"hf_tst.scripts.{command}").make_parser(prog=f"hf-tst {command}")
    launcher = launch_command_parser()
    launcher.error = launcher_error
    *configs, launcher_argv = parser.parse_args_and_config(argv, return_remaining_strings=True,
                                                           other_flags=[*flags_of(launcher), "--accelerate_config"])
    script_argv = without_subsequence(argv, launcher_argv)
    module = f"hf_tst.scripts.{command}"
    launch_args = launcher.parse_args([*with_launcher_defaults(resolve_accelerate_config(launcher_argv)), "--module",
                                       module, *script_argv])
    if launch_args.training_script != module:  # a string that is neither a flag nor a flag's value
        raise UsageError(f"unexpected argument {launch_args.training_script!r}; flags take the form --field value.")
    preemption_signals = next((c.tst_save_on_signal for c in configs if hasattr(c, "tst_save_on_signal")), [])
    try:
        with signals_left_to_trainers(preemption_signals):  # the trainers save, however long it takes, and exit 75
            launch_command(launch_args)
    except (subprocess.CalledProcessError, ChildFailedError) as error:
        raise LaunchedJobFailed(launched_status(error)) from error


def launcher_error(message: str):
    """A bad launcher value as one line, instead of accelerate's usage of every flag and an exit."""
    raise UsageError(f"{message} (`accelerate launch --help` lists the launcher's flags).")


def without_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    """`items` less the ordered `subsequence` of them."""
    rest, pending = [], iter(subsequence)
    next_out = next(pending, None)
    for item in items:
        if item == next_out:
            next_out = next(pending, None)
        else:
            rest.append(item)
    return rest


def resolve_accelerate_config(launcher_argv: list[str]) -> list[str]:
    """`--accelerate_config PATH|NAME` as accelerate's `--config_file`: a file, or a launch config shipped
    with hf_tst (`resources/accelerate/NAME.yaml`)."""
    launcher_argv = [part for item in launcher_argv
                     for part in (item.split("=", 1) if item.startswith("--accelerate_config=") else [item])]
    if "--accelerate_config" not in launcher_argv:
        return launcher_argv
    at = launcher_argv.index("--accelerate_config")
    name = launcher_argv[at + 1] if at + 1 < len(launcher_argv) else ""
    shipped = ACCELERATE_CONFIGS / f"{name}.yaml"
    if name and Path(name).is_file():
        path = name
    elif name and shipped.is_file():
        path = str(shipped)
    else:
        raise UsageError(f"--accelerate_config {name!r} is neither a file nor a launch config shipped with hf_tst; "
                         f"pass a path or one of {', '.join(shipped_accelerate_configs())}.")
    return ["--config_file", path, *launcher_argv[:at], *launcher_argv[at + 2:]]


def with_launcher_defaults(launcher_argv: list[str]) -> list[str]:
    """`launcher_argv` plus the settings `accelerate launch` would default, each with a warning, when no launch
    config gives them (`--config_file`, or the file `accelerate config` writes): the values it would use, a
    process per local GPU (one without), one machine, no mixed precision, no dynamo; and `--multi_gpu` whenever
    that makes several processes (accelerate would run one, silently)."""
    given = {"--" + item[2:].split("=", 1)[0].replace("-", "_") for item in launcher_argv if item.startswith("--")}
    if "--config_file" in given or os.path.isfile(default_config_file):
        return launcher_argv
    filled = [*launcher_argv]
    processes = launcher_value(launcher_argv, "--num_processes") or max(accelerator_count(), 1)
    machines = launcher_value(launcher_argv, "--num_machines") or 1
    if "--num_processes" not in given:
        filled += ["--num_processes", str(processes)]
    if (processes > 1 or machines > 1) and not given & {"--multi_gpu", "--cpu", "--use_deepspeed", "--use_fsdp",
                                                         "--tpu", "--use_megatron_lm"}:
        filled.append("--multi_gpu")
    return filled + [item for flag, value in LAUNCHER_DEFAULTS.items() if flag not in given for item in (flag, value)]


def launcher_value(launcher_argv: list[str], flag: str) -> int | None:
    """The integer value of launcher flag `flag` (`--flag N` or `--flag=N`) in `launcher_argv`, or None."""
    for at, item in enumerate(launcher_argv):
        if item.startswith(flag + "="):
            value = item.split("=", 1)[1]
        elif item == flag and at + 1 < len(launcher_argv):
            value = launcher_argv[at + 1]
        else:
            continue
        return int(value) if value.isdigit() else None  # accelerate's parser names a bad value
    return None


def shipped_accelerate_configs() -> list[str]:
    """The names `--accelerate_config` takes."""
    return sorted(entry.name.removesuffix(".yaml") for entry in ACCELERATE_CONFIGS.iterdir())
