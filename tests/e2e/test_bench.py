"""`automation bench --quick`: every scenario runs end to end and records sane figures.

Timing goals are not asserted here (they are reported as PASS or MISS by the bench itself and
depend on the machine); what is asserted is that the harness works: every run completed, every
scenario printed its figures, the seed's design and the pipeline produced the same outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from automation.supervisor import settings_env
from bench.scenarios import SCENARIOS
from consumers.app import PROCESSES
from shared.settings import Settings

pytestmark = pytest.mark.e2e

PRINTED = {
    "efficiency": ("ideal", "efficiency"),
    "seed-design": ("seed design (one worker, sequential)", "speed-up"),
    "overhead": ("batch messages/s end to end",),
    "scale": ("peak RSS MB", "peak growth"),
    "fairness": ("batch_window", "max ratio", "0 (all at once)"),
    "provider": ("articles/s",),
}


@pytest.mark.timeout(600)
def test_quick_bench_runs_every_scenario(settings: Settings, tmp_path: Path) -> None:
    figures_file = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(figures_file)],
                          env=settings_env(settings), capture_output=True, text=True, timeout=540)
    output = done.stdout
    assert done.returncode == 0, f"bench exited {done.returncode}\n{output[-4000:]}\n{done.stderr[-4000:]}"
    for scenario, phrases in PRINTED.items():
        assert f"== {scenario} ==" in output
        for phrase in phrases:
            assert phrase in output, f"{scenario} did not print {phrase!r}"
    assert "== summary ==" in output

    document = json.loads(figures_file.read_text())
    assert document["failures"] == []
    assert document["scenarios"] == list(SCENARIOS)
    figures = document["figures"]

    efficiency = figures["efficiency"]
    assert efficiency["wall_s"] > 0 and efficiency["ideal_s"] > 0
    assert 0 < efficiency["efficiency"] <= 1.5
    assert efficiency["stages"]["6"]["ai_calls"] == efficiency["counts"]["images"]
    assert efficiency["stages"]["3"]["ai_calls"] == 0  # stage 3 calls no AI

    seed = figures["seed-design"]
    assert seed["counts_match"] is True
    assert seed["counts"] == seed["pipeline_counts"]
    assert seed["counts"]["images"] > 0 and seed["counts"]["credits"] > 0
    assert seed["wall_s"] > 0 and seed["pipeline_wall_s"] == efficiency["wall_s"] and seed["speedup"] > 0

    assert figures["overhead"]["batches"] > 0 and figures["overhead"]["messages_per_second"] > 0

    runs = figures["scale"]["runs"]
    assert [run["keywords"] for run in runs] == [50, 100]
    for run in runs:
        assert run["wall_s"] > 0 and run["batches"] > 0
        assert set(run["peak_rss_mb"]) == set(PROCESSES)  # every consumer process, publish and notify too
        assert all(0 < mb < 2048 for mb in run["peak_rss_mb"].values())
    assert runs[1]["batches"] > runs[0]["batches"]
    assert set(figures["scale"]["growth"]["per_process"]) == set(runs[0]["peak_rss_mb"])

    windows = figures["fairness"]["windows"]
    assert "0" in windows and len(windows) >= 2  # the batch window(s) beside everything queued at once
    for window in windows.values():
        assert window["solo_s"] > 0
        assert len(window["small_s"]) == figures["fairness"]["small_sites"]
        assert all(seconds > 0 for seconds in window["small_s"])
        assert window["max_ratio"] >= window["median_ratio"] > 0

    goals = {goal["scenario"] for goal in document["goals"]}
    assert goals == {"efficiency", "seed-design", "overhead", "scale", "fairness"}
    assert all(isinstance(goal["passed"], bool) for goal in document["goals"])
