"""Timing and peak-memory helpers shared by the benchmarks.

Time: the median wall-clock time of a call, after warm-up calls, with the device synchronised.
Peak memory: what a call allocates at its highest point above what was allocated before it.
On CUDA this is PyTorch's allocator statistic. On CPU it is the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs) above its resident set before the call, with glibc
told to serve every allocation above 64 KiB by mmap, so freed tensors leave the resident set at
once and new ones enter it: the figure then follows tensor allocations, not malloc's free lists.
"""

import ctypes
import gc
import statistics
import time
from collections.abc import Callable

import torch
from transformers import TrainerCallback

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def configure_cpu_allocator() -> None:
    """Serve allocations above 64 KiB by mmap (call once, before the tensors to measure exist)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(call: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 2) -> float:
    """Median time of `call()` over `repeats` runs, after `warmup` runs."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


class PeakMemory:
    """Peak memory allocated between `start()` and `stop()`, above what was allocated at `start()`."""

    def __init__(self, device: torch.device):
        self.device = device
        self._before = 0

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            synchronize(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        self._before = _resident_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current resident set

    def stop(self) -> int:
        if self.device.type == "cuda":
            synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self._before
        return _resident_kib("VmHWM") * 1024 - self._before


class StepMeter(TrainerCallback):
    """Times each optimizer step from the previous step's end (data loading included), the part of
    it spent waiting for the batch (before the step begins), and the peak memory allocated
    meanwhile, skipping the first `warmup` steps; `steps` holds the step number of each figure."""

    def __init__(self, device: torch.device, warmup: int):
        self.device, self.warmup = device, warmup
        self.memory = PeakMemory(device)
        self.steps, self.seconds, self.data_seconds, self.peaks = [], [], [], []
        self._last = None
        self._begin = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        if self._last is not None and state.global_step > self.warmup:
            self.steps.append(state.global_step)
            self.seconds.append(time.perf_counter() - self._last)
            self.data_seconds.append(self._begin - self._last)
            self.peaks.append(self.memory.stop())
        self.memory.start()
        self._last = time.perf_counter()


def peak_bytes(call: Callable[[], object], device: torch.device) -> int:
    """Peak memory `call()` allocates above what is allocated before it, in bytes."""
    meter = PeakMemory(device)
    meter.start()
    call()
    return meter.stop()


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def publish(report: str, output: str | None) -> None:
    """Print the report, and write it to `output` when given."""
    print("\n" + report)
    if output:
        with open(output, "w") as out:
            out.write(report + "\n")
