"""Starting and stopping the consumer processes as a user runs them (demo, bench, tests).

Each consumer is a separate OS process running `automation consume ...`; the fleet also
samples their resident memory so the bench can report each process's peak.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from shared.settings import Settings

ALL_PROCESSES = ("control", *(f"stage{n}" for n in range(1, 8)))


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see `settings`."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"AUTOMATION_{name.upper()}"] = str(value)
    return env


@dataclass
class ConsumerFleet:
    settings: Settings
    concurrency: int = 4
    log_dir: Path | None = None
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start one more replica of `name` (control, stage1 ... stage7)."""
        command = [sys.executable, "-m", "shared.cli", "consume", name, "--concurrency", str(self.concurrency)]
        output = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            replica = len(self.processes.get(name, []))
            output = (self.log_dir / f"{name}-{replica}.out").open("ab")  # type: ignore[assignment]
        process = subprocess.Popen(command, env=settings_env(self.settings), stdout=output,
                                   stderr=subprocess.STDOUT)
        self.processes.setdefault(name, []).append(process)
        return process

    def start_all(self, names: tuple[str, ...] = ALL_PROCESSES) -> None:
        for name in names:
            self.start(name)

    def sample_memory(self) -> None:
        """Record each live process's resident memory; the bench calls this while a run goes."""
        for name, replicas in self.processes.items():
            for index, process in enumerate(replicas):
                try:
                    rss = psutil.Process(process.pid).memory_info().rss
                except psutil.Error:
                    continue
                key = f"{name}#{index}" if index else name
                self.peak_rss[key] = max(self.peak_rss.get(key, 0), rss)

    def alive(self) -> dict[str, bool]:
        return {f"{n}#{i}": p.poll() is None for n, ps in self.processes.items() for i, p in enumerate(ps)}

    def kill(self, name: str, index: int = 0, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name][index]
        process.send_signal(sig)
        process.wait(timeout=60)

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM everything, give in-flight batches time to finish, then SIGKILL stragglers."""
        every = [p for ps in self.processes.values() for p in ps if p.poll() is None]
        for process in every:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in every:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
