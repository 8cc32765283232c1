"""Printing the figures as they come, the closing goal summary, and the JSON record.

Goals are reported, not asserted: a miss is a MISS line, while a failed run or a count mismatch
is a failure, which makes `automation bench` exit non-zero.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COMPARE = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}
SYMBOL = {">=": "≥", "<=": "≤", "<": "<", ">": ">"}


@dataclass(frozen=True)
class Goal:
    scenario: str
    name: str
    figure: float
    op: str
    target: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        return not math.isnan(self.figure) and COMPARE[self.op](self.figure, self.target)

    def line(self) -> str:
        figure = f"{_number(self.figure)}{self.unit}"
        goal = f"{SYMBOL[self.op]} {_number(self.target)}{self.unit}"
        return f"{self.name:<44} {figure:>12}   goal {goal:<12} {'PASS' if self.passed else 'MISS'}"


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        print(f"\n== {title} ==", flush=True)

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def record(self, scenario: str, figures: dict[str, Any]) -> None:
        self.figures.setdefault(scenario, {}).update(figures)

    def goal(self, scenario: str, name: str, figure: float, op: str, target: float, unit: str = "") -> None:
        self.goals.append(Goal(scenario, name, figure, op, target, unit))

    def fail(self, scenario: str, message: str) -> None:
        self.failures.append(f"{scenario}: {message}")
        print(f"FAILED {scenario}: {message}", flush=True)

    def summary(self) -> None:
        self.section("summary")
        for goal in self.goals:
            self.say(goal.line())
        for failure in self.failures:
            self.say(f"FAILED {failure}")
        passed = sum(goal.passed for goal in self.goals)
        self.say(f"{passed}/{len(self.goals)} goals met, {len(self.failures)} failure(s)")

    def write_json(self, path: Path, meta: dict[str, Any]) -> None:
        document = {**meta, "figures": self.figures,
                    "goals": [{**asdict(goal), "passed": goal.passed} for goal in self.goals],
                    "failures": self.failures}
        path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned columns (the first left-aligned), numbers formatted for reading."""
    cells = [list(headers)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        lines.append("  ".join(value.ljust(widths[0]) if i == 0 else value.rjust(widths[i])
                               for i, value in enumerate(row)))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value == int(value) and abs(value) >= 10:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def megabytes(rss: int) -> float:
    return rss / 2**20
