"""The device's preflight, before a device script spends its time (`device_env.sh` runs it first thing).

1. Every import hf_tst and the screen need, from the repository on PYTHONPATH, and hf_tst's own requirements
   (its core and `plots` extra in `pyproject.toml`) against their specifiers: a failed import or a version
   outside them stops here. The requirements under those (each package's `Requires-Dist`, recursively) are
   checked too, but a mismatch there is a warning: metadata bounds are often looser in practice, and the
   screen's preflight training steps show whether the stack works.
2. The hardware line of every report: the GPU, torch, CUDA, transformers; whether bf16 and SDPA's flash kernel
   run (both are tried, not read from flags).

Prints what it found; on a problem, one line saying what and how to fix it, and exit status 1.
`--env FILE` writes `HARDWARE=...` for the shell to source.
"""

import argparse
import os
import shlex
import sys
from importlib import import_module, metadata

from device_wheels import REPO, read_image, walk
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

IMPORTS = ("torch", "transformers", "accelerate", "datasets", "huggingface_hub", "yaml", "matplotlib.pyplot",
           "hf_tst.pretraining", "hf_tst.hub")


def requirement_problems() -> tuple[list[str], list[str], list[str], dict[str, str]]:
    """(one line per root requirement: name, version, specifier; one line per root requirement not met; one line
    per deeper requirement not met; the version of every package met on the way). torch's own requirements are
    not followed: a CUDA build pins the CUDA libraries of its image, and `hardware()` runs it."""
    found, problems, warnings, versions = [], [], [], {}

    def follow(requirement: Requirement, needed_by: str) -> str | None:
        name = canonicalize_name(requirement.name)
        failures = problems if needed_by == "hf_tst" else warnings
        try:
            version = versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            failures.append(f"{needed_by} needs {requirement}, which is not installed")
            return None
        if needed_by == "hf_tst":
            found.append(f"{name} {version} ({requirement.specifier or 'any'})")
        if not requirement.specifier.contains(version, prereleases=True):
            failures.append(f"{needed_by} needs {requirement}, but {name} {version} is installed")
        return None if name == "torch" else version

    walk({}, follow)
    return found, problems, warnings, versions


def import_problems() -> list[str]:
    problems = []
    for module in IMPORTS:
        try:
            import_module(module)
        except Exception as error:  # noqa: BLE001 - any failure to import is the finding
            problems.append(f"import {module} failed: {type(error).__name__}: {error}")
    hf_tst = sys.modules.get("hf_tst")
    if hf_tst is not None and not os.path.abspath(hf_tst.__file__).startswith(REPO + os.sep):
        problems.append(f"hf_tst comes from {hf_tst.__file__}, not this repository ({REPO})")
    return problems


def hardware() -> tuple[str, list[str]]:
    """(the hardware line, lines on bf16 and flash attention)."""
    import torch
    import torch.nn.functional as F
    import transformers
    from torch.nn.attention import SDPBackend, sdpa_kernel

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if not torch.cuda.is_available():
        return f"CPU ({os.cpu_count()} cores), no CUDA; {versions}", ["bf16: CPU autocast"]
    name = torch.cuda.get_device_name()
    checks = []
    try:
        a = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
        (a @ a).sum().item()
        checks.append(f"bf16: yes (is_bf16_supported={torch.cuda.is_bf16_supported()})")
    except RuntimeError as error:
        checks.append(f"bf16: NO ({error})")
    try:
        q = torch.randn(1, 8, 256, 64, device="cuda", dtype=torch.bfloat16)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, q, q, is_causal=True).sum().item()
        checks.append("SDPA flash kernel: yes")
    except RuntimeError as error:
        checks.append(f"SDPA flash kernel: no ({str(error).splitlines()[0]})")
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    line = f"{name} ({memory:.0f} GiB, CUDA {torch.version.cuda}); {versions}"
    return line, checks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", help="write HARDWARE here, as a shell assignment")
    args = parser.parse_args()
    problems = import_problems()
    found, unmet, warnings, versions = requirement_problems()
    print("preflight: Python " + sys.version.split()[0] + "; " + ", ".join(found))
    image = read_image(os.path.join(REPO, "benchmarks", "device-image.txt"))
    unrecorded = [f"{name}=={version}" for name, version in sorted(versions.items()) if name in image
                  and image[name] is None]
    print("preflight: versions device-image.txt does not record: " + " ".join(unrecorded))
    for warning in warnings:
        print(f"preflight: warning: {warning}")
    for problem in problems + unmet:
        print(f"preflight: {problem}")
    if problems:
        sys.exit(f"preflight: stopped before any compute: {problems[0]}; carry what is missing: "
                 "bash benchmarks/device_prepare.sh here, then rerun with .whl carried.")
    if unmet:
        sys.exit(f"preflight: stopped before any compute: {unmet[0]}. Where the image holds it: record that "
                 "version in benchmarks/device-image.txt and rerun bash benchmarks/device_prepare.sh here, so "
                 "that the wheels carry the version CI tests.")
    line, checks = hardware()
    print(f"preflight: {line}; " + "; ".join(checks))
    if any(": NO" in check for check in checks):
        sys.exit("preflight: stopped before any compute: this GPU does not run bf16, which the screen trains in.")
    if args.env:
        with open(args.env, "w") as f:
            f.write(f"HARDWARE={shlex.quote(line)}\n")


if __name__ == "__main__":
    main()
