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
from pydantic import SecretStr

from consumers.app import PROCESSES
from shared.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see `settings`."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"AUTOMATION_{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


@dataclass
class ConsumerFleet:
    """The consumers of one machine. Processes on one host cannot share a metrics port, so none
    serves /metrics, /healthz and /readyz unless given a port: `metrics_ports` names the port of
    one replica of each process (`{"control": 9100, "stage1": 9101}`; a replica started while
    another holds the port gets none), `start(name, metrics_port=)` that of any replica;
    `metrics_url(name)` says where to find it."""

    settings: Settings
    concurrency: int = 4
    log_dir: Path | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    ports_by_pid: dict[int, int] = field(default_factory=dict)

    def start(self, name: str, metrics_port: int | None = None) -> subprocess.Popen[bytes]:
        """Start one more replica of `name` (control, stage1 ... stage7)."""
        command = [sys.executable, "-m", "automation.cli", "consume", name, "--concurrency", str(self.concurrency)]
        if metrics_port is None:  # the configured port, unless a live replica holds it
            held = {self.ports_by_pid.get(p.pid) for p in self.processes.get(name, []) if p.poll() is None}
            metrics_port = self.metrics_ports.get(name, 0)
            metrics_port = 0 if metrics_port in held else metrics_port
        env = settings_env(self.settings)
        env["AUTOMATION_METRICS_PORT"] = str(metrics_port)
        output = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            replica = len(self.processes.get(name, []))
            output = (self.log_dir / f"{name}-{replica}.out").open("ab")  # type: ignore[assignment]
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        self.processes.setdefault(name, []).append(process)
        self.ports_by_pid[process.pid] = metrics_port
        return process

    def metrics_url(self, name: str, index: int = 0) -> str:
        """Base URL of a replica's /metrics, /healthz and /readyz (it must have been given a port)."""
        port = self.ports_by_pid.get(self.processes[name][index].pid, 0)
        if not port:
            raise LookupError(f"{name} replica {index} serves no metrics port")
        return f"http://127.0.0.1:{port}"

    def start_all(self, names: tuple[str, ...] = PROCESSES) -> None:
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
        self.ports_by_pid.clear()
