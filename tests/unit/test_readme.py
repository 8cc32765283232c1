"""The README stays short and its stage table stays the catalogue's: docs that cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from shared.catalogue import STAGES, Stage

README = Path(__file__).resolve().parents[2] / "README.md"
MAX_BYTES = 20_000
NONE = "\N{EN DASH}"  # an empty cell


def credits_cell(stage: Stage) -> str:
    """`0`, `2 per cluster`, `1 per 5 keywords`: the rate per item in, as people say it."""
    if stage.credits == 0:
        return "0"
    if stage.credits_per == 1:
        item = stage.input_name.removesuffix("s")
        return f"{stage.credits} per {item}"
    return f"{stage.credits} per {stage.credits_per} {stage.input_name}"


def stage_table() -> str:
    """The stage table as the README shows it, from `shared.catalogue.STAGES`."""
    rows = ["| stage | seed query | default batch | AI function | credits |", "|---|---|---|---|---|"]
    for stage in STAGES:
        batch = NONE if stage.default_batch_size is None else str(stage.default_batch_size)
        rows.append(f"| {stage.number} {stage.name} | {stage.seed_query} | {batch} | {stage.ai_function or NONE} "
                    f"| {credits_cell(stage)} |")
    return "\n".join(rows) + "\n"


def test_the_stage_table_is_the_catalogue() -> None:
    assert stage_table() in README.read_text(encoding="utf-8"), (
        "README.md's stage table differs from shared.catalogue; paste this in its place:\n" + stage_table())


def test_the_readme_stays_short() -> None:
    size = len(README.read_bytes())
    assert size < MAX_BYTES, f"README.md is {size} bytes; keep it under {MAX_BYTES} (history goes to bench/README.md)"


def test_credits_cell_reads_like_the_seed() -> None:
    by_number = {stage.number: stage for stage in STAGES}
    assert credits_cell(by_number[1]) == "1 per 5 keywords"
    assert credits_cell(by_number[2]) == "2 per cluster"
    assert credits_cell(by_number[3]) == "0"
