"""Cost accounting: forward passes counted where the model is called, wall
time per stage, and peak memory (CUDA max allocated, or process RSS on CPU)."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

SEARCH_STAGES = ("gate", "relevance", "ranking", "search")
"""The stages whose forward passes are the visual search's (the paper's
cost): the gate's own question, relevance prefills, verifications and
ZoomEye's tree search. Target extraction ("targets") and the final answer
("answer") are not; a prefill that may become either is timed as
"prefill" until the method says which (``StageClock.assign``)."""


class CallCounter:
    """Counts model calls made by an adapter.

    The cost rule, here only: one forward pass = one prompt through the
    model, as the paper counts (a batch of 4 crops counts 4). A prompt that
    goes on from an image prefix prefilled once (``mllm/prefixes.py``)
    counts one pass, as it did when it was prefilled whole; the prefix's own
    prefill counts nothing more (it is the shared start of those prompts).
    So reusing a prefix leaves the passes as they were and makes each one
    cheaper; the wall time says by how much."""

    def __init__(self) -> None:
        self.forward_passes = 0
        self.generate_calls = 0
        self.decoded_tokens = 0
        """Tokens generated (every reply's, the answer's and the target
        extraction's; not a cost the paper counts, a measure of decoding)."""

    def count_prompts(self, prompts: int) -> None:
        """``prompts`` prompts went through the model (prefilled whole, or
        continued from a shared prefix)."""
        self.forward_passes += prompts

    def snapshot(self) -> tuple[int, int, int]:
        return self.forward_passes, self.generate_calls, self.decoded_tokens


@dataclass
class Cost:
    forward_passes: int = 0
    """Forward passes of the visual search: relevance prefills + verifications
    (target extraction and the final answer excluded, as in the paper)."""
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    peak_memory_kind: str = "cpu_rss"
    """``cuda_max_allocated`` or ``cpu_rss`` (the whole process, weights included)."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_forward_passes: dict[str, int] = field(default_factory=dict)
    generate_calls: int = 0
    stage_decoded_tokens: dict[str, int] = field(default_factory=dict)
    """Tokens generated per stage (``targets``: the target reply, ``answer``)."""

    @classmethod
    def from_clock(cls, clock: "StageClock", seconds: float, memory: "PeakMemory") -> "Cost":
        """The cost of a run the clock timed: its search passes (the passes
        of ``SEARCH_STAGES``, the one rule), stage times and the memory peak."""
        passes = clock.forward_passes
        return cls(
            forward_passes=sum(passes.get(stage, 0) for stage in SEARCH_STAGES),
            seconds=seconds,
            peak_memory_bytes=memory.peak,
            peak_memory_kind=memory.kind,
            stage_seconds=dict(clock.seconds),
            stage_forward_passes=dict(passes),
            generate_calls=clock.generate_calls,
            stage_decoded_tokens={stage: n for stage, n in clock.decoded_tokens.items() if n},
        )

    def to_json(self) -> dict:
        return {
            "forward_passes": self.forward_passes,
            "seconds": round(self.seconds, 4),
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_kind": self.peak_memory_kind,
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
            "stage_forward_passes": dict(self.stage_forward_passes),
            "generate_calls": self.generate_calls,
            "stage_decoded_tokens": dict(self.stage_decoded_tokens),
        }


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # no /proc (macOS, Windows): the process-lifetime peak is the best we have
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """Peak memory over a block: CUDA max allocated on a CUDA device, else the
    process RSS sampled by a background thread (every ``interval`` seconds)."""

    def __init__(self, device: object = "cpu", interval: float = 0.005) -> None:
        self.device = device
        self.interval = interval
        self.peak = 0
        self.kind = "cpu_rss"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _is_cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    def __enter__(self) -> "PeakMemory":
        if self._is_cuda():
            import torch

            self.kind = "cuda_max_allocated"
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = current_rss_bytes()
            self._thread = threading.Thread(target=self._sample, name="focus-peak-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self._is_cuda():
            import torch

            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, current_rss_bytes())


class StageClock:
    """Wall time and forward passes per named stage, read off a CallCounter."""

    def __init__(self, counter: CallCounter) -> None:
        self.counter = counter
        self.seconds: dict[str, float] = {}
        self.forward_passes: dict[str, int] = {}
        self.decoded_tokens: dict[str, int] = {}
        self.generate_calls = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        passes0, gens0, tokens0 = self.counter.snapshot()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            passes1, gens1, tokens1 = self.counter.snapshot()
            self.forward_passes[name] = self.forward_passes.get(name, 0) + passes1 - passes0
            self.decoded_tokens[name] = self.decoded_tokens.get(name, 0) + tokens1 - tokens0
            self.generate_calls += gens1 - gens0

    def assign(self, stage: str, to: str) -> None:
        """Book what was timed as ``stage`` under ``to`` (e.g. the plain
        answer's prefill: the answer's when the gate answered, the maps'
        when the search read them)."""
        for book in (self.seconds, self.forward_passes, self.decoded_tokens):
            if stage in book:
                book[to] = book.get(to, 0) + book.pop(stage)
