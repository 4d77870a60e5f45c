"""The wheels a GPU machine's image lacks for hf_tst and the GPU screen, downloaded here to be carried there.

The device image (`device-image.txt`: its Python, its packages, their versions where known) has no network,
so what it lacks travels as wheels. Which ones: walk the requirements of hf_tst's core and of the screen's
`plots` extra (`pyproject.toml`), and each requirement the image does not meet is carried at the version
installed in this environment (the one CI tests, `make test`'s .venv), along with every requirement of its
own that the image does not meet, markers evaluated for the image's Python on x86-64 Linux. The image also
"does not meet" a requirement with a version older than the one CI tests (tokenizers 0.23.2 caps
huggingface_hub below the 2.x that transformers needs; 0.23.3 does not), except torch and numpy, the builds the
image's compiled packages are built against, which stay as they are. A package the image has at an unrecorded
version is taken to meet its requirement and listed as unverified: the device's preflight (`preflight.py`)
reports it there before any compute, and its training steps show whether it works.

    bash benchmarks/device_wheels.sh .whl [3.12]      # this script, under .venv's Python

`DIR`'s old wheels are removed first (two versions of one package stop the device's install). Each wheel and
the total size are printed. The device installs them with
`pip install --no-index --no-deps --target SITE DIR/*.whl` and puts SITE on PYTHONPATH (`device_env.sh`).
"""

import argparse
import os
import subprocess
import sys
from importlib import metadata

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHMARKS)
SCREEN_EXTRAS = ("plots",)  # the screen's report draws its curves
IMAGE_KEEPS = {"torch", "numpy"}  # the image's builds, which its compiled packages are built against
# pip matches platform tags exactly: every glibc a manylinux wheel may name, up to the image's (2.39).
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64",
             *(f"manylinux_2_{glibc}_x86_64" for glibc in range(5, 40)), "linux_x86_64"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", help="folder for the wheels (the device scripts install those in .whl/)")
    parser.add_argument("python_version", nargs="?", default="3.12", help="the image's Python (default: 3.12)")
    parser.add_argument("--image", default=os.path.join(BENCHMARKS, "device-image.txt"))
    parser.add_argument("--image_requirements", action="store_true",
                        help="print the image's packages that hf_tst's requirements reach, as pip requirements (its "
                             "recorded version pinned), and download nothing: what a venv like the image needs")
    return parser.parse_args()


def read_image(path: str) -> dict[str, Version | None]:
    """The image's packages: canonical name -> version, None where only presence was recorded."""
    packages = {}
    with open(path) as f:
        for line in f:
            for token in line.split("#", 1)[0].split():
                name, _, version = token.partition("==")
                packages[canonicalize_name(name)] = Version(version) if version else None
    return packages


def root_requirements() -> list[Requirement]:
    """hf_tst's core requirements and those of the screen's extras, from pyproject.toml."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    extras = [req for extra in SCREEN_EXTRAS for req in project["optional-dependencies"][extra]]
    return [Requirement(text) for text in [*project["dependencies"], *extras]]


def marker_environment(python_version: str) -> dict[str, str]:
    return {"python_version": python_version, "python_full_version": f"{python_version}.0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def applies(requirement: Requirement, environment: dict, extras: set[str]) -> bool:
    """Whether `requirement`'s marker holds in `environment` (marker variables that override this interpreter's)
    when `extras` are asked of the distribution that states it."""
    return requirement.marker is None or any(
        requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def dependencies(name: str, extras: set[str], environment: dict) -> list[Requirement]:
    """The installed distribution `name`'s own requirements that apply in `environment` with `extras`."""
    requirements = [Requirement(text) for text in metadata.requires(name) or []]
    return [requirement for requirement in requirements if applies(requirement, environment, extras)]


def tested_version(name: str, requirement: Requirement, needed_by: str) -> str:
    """The version of `name` installed here, the one CI tests, which must meet `requirement`."""
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(f"device_wheels: {needed_by} needs {requirement} on the image, which lacks it, and this "
                 f"environment ({sys.prefix}) has no {name} to take the version from; run it under the "
                 "environment CI tests (make test builds .venv).")
    if not requirement.specifier.contains(version, prereleases=True):
        sys.exit(f"device_wheels: {needed_by} needs {requirement}, but this environment has {name} {version}; "
                 "rebuild it (make test) before carrying wheels from it.")
    return version


def image_meets(name: str, version: Version, requirement: Requirement, needed_by: str) -> bool:
    """Whether the image's `version` of `name` serves: it meets `requirement` and is not older than the version
    CI tests; a package of `IMAGE_KEEPS` serves if it meets it, and stops the walk if it does not."""
    meets = requirement.specifier.contains(version, prereleases=True)
    if name in IMAGE_KEEPS:
        if not meets:
            sys.exit(f"device_wheels: {needed_by} needs {requirement}, but the image holds {name} {version}, which "
                     "is the image's own build and is not carried; the screen needs an image with a newer one.")
        return True
    try:
        return meets and not version < Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return meets


def walk(environment: dict, follow) -> None:
    """Visit hf_tst's requirement tree, roots first: `follow(requirement, needed_by)` is called for each
    requirement met and returns the version of the distribution whose own requirements to visit next (once per
    set of extras asked of it), or None to stop there."""
    walked = {}
    pending = [(requirement, "hf_tst") for requirement in root_requirements()
               if applies(requirement, environment, set())]
    while pending:
        requirement, needed_by = pending.pop()
        name, extras = canonicalize_name(requirement.name), set(requirement.extras)
        version = follow(requirement, needed_by)
        if version is not None and (name not in walked or not extras <= walked[name]):
            walked[name] = walked.get(name, set()) | extras
            pending += [(dependency, f"{name} {version}")
                        for dependency in dependencies(name, walked[name], environment)]


def wheels_to_carry(image: dict, environment: dict) -> tuple[dict[str, str], dict[str, set[str]], set[str]]:
    """(name -> version to carry, name -> the specifiers taken as met by the image's unrecorded version, the
    image's packages that the walk met). The walk goes on below what is carried and stops at what the image has."""
    carry, unverified, met = {}, {}, set()

    def follow(requirement: Requirement, needed_by: str) -> str | None:
        name = canonicalize_name(requirement.name)
        if name in carry:
            if not requirement.specifier.contains(carry[name], prereleases=True):
                sys.exit(f"device_wheels: {needed_by} needs {requirement}, but {name} {carry[name]} is carried for "
                         "another package; this environment's versions disagree: rebuild it (make test).")
            return carry[name]
        if name in image:
            met.add(name)
            if image[name] is None:
                unverified.setdefault(name, set()).update(str(spec) for spec in requirement.specifier)
                return None
            if image_meets(name, image[name], requirement, needed_by):
                return None
        carry[name] = tested_version(name, requirement, needed_by)
        return carry[name]

    walk(environment, follow)
    return carry, unverified, met


def download(carry: dict[str, str], dest: str, python_version: str) -> None:
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "--dest", dest,
                    *(f"{name}=={version}" for name, version in sorted(carry.items()))], check=True)


def main():
    args = parse_args()
    image = read_image(args.image)
    carry, unverified, met = wheels_to_carry(image, marker_environment(args.python_version))
    if args.image_requirements:
        print("\n".join(f"{name}=={image[name]}" if image[name] else name for name in sorted(met)))
        return
    os.makedirs(args.dest, exist_ok=True)
    for stale in os.listdir(args.dest):
        if stale.endswith(".whl"):
            os.remove(os.path.join(args.dest, stale))
    download(carry, args.dest, args.python_version)
    wheels = sorted(name for name in os.listdir(args.dest) if name.endswith(".whl"))
    total = 0
    for wheel in wheels:
        size = os.path.getsize(os.path.join(args.dest, wheel))
        total += size
        print(f"{size / 2**20:7.2f} MiB  {wheel}")
    print(f"{total / 2**20:7.2f} MiB  in {len(wheels)} wheels for Python {args.python_version} in {args.dest}")
    bounded = [name + ",".join(sorted(specs)) for name, specs in sorted(unverified.items()) if specs]
    print("taken as met by the image's unrecorded versions (the preflight reports any it finds unmet): "
          + ", ".join(bounded))


if __name__ == "__main__":
    main()
