"""`python -m bench.hostile`: attack the pipeline's real processes and count what gets through.

Cases: retries (a batch that always fails: one retry per attempt, one dead letter, a reason),
malformed (bad messages on real routing keys: each dead-lettered once, nothing else changes),
out-of-order (forged stage commands: the run ignores them), db-outage (the run's database gone
mid-run: the run resolves within 120 s of its return) and determinism (two runs of one input
with the offline provider: same totals, same titles). Each case prints its figures and GOAL MET
or GOAL MISSED; the exit code is 0 only when every goal is met. A figure-printing script, not a
test: it takes minutes, and every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable

from bench.harness import settle
from bench.hostile_cases import malformed_messages, out_of_order, retries
from bench.hostile_common import CaseResult
from bench.hostile_runs import db_outage, determinism
from shared.settings import Settings, get_settings

Case = Callable[[Settings, argparse.Namespace], Awaitable[CaseResult]]
CASES: dict[str, Case] = {
    "retries": lambda s, a: retries(s, a.quick),
    "malformed": lambda s, a: malformed_messages(s, a.quick),
    "out-of-order": lambda s, a: out_of_order(s, a.quick),
    "db-outage": lambda s, a: db_outage(s, a.quick, a.outage_seconds),
    "determinism": lambda s, a: determinism(s, a.quick),
}
CASE_TIMEOUT = 1800.0  # a safety net above every wait inside a case


async def hostile(base: Settings, args: argparse.Namespace) -> int:
    results: list[CaseResult] = []
    started = time.monotonic()
    try:
        for name in args.only or list(CASES):
            print(f"\n== {name} ==", flush=True)
            began = time.monotonic()
            try:
                result = await asyncio.wait_for(CASES[name](base, args), CASE_TIMEOUT)
            except Exception as error:  # a case that could not finish has missed its goal
                traceback.print_exc()
                result = CaseResult(name, False, {"error": f"{type(error).__name__}: {error}"[:200]})
            await settle()  # its teardown (and what it prints) belongs to this case
            results.append(result)
            print(f"  {'GOAL MET' if result.met else 'GOAL MISSED'} ({name} took {time.monotonic() - began:.0f}s)",
                  flush=True)
    finally:
        await settle()  # consumer processes stopped, databases and queue prefixes removed
    print("\n== summary ==")
    for result in results:
        print(result.line())
    print(f"hostile bench took {time.monotonic() - started:.0f}s", flush=True)
    return 0 if results and all(r.met for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (100 malformed messages, 20 s outage)")
    parser.add_argument("--only", action="append", choices=list(CASES), metavar="NAME",
                        help=f"run only this case (repeatable): {', '.join(CASES)}")
    parser.add_argument("--outage-seconds", type=float, default=None,
                        help="how long the database is unreachable (default 180, 20 with --quick)")
    args = parser.parse_args()
    if args.outage_seconds is None:
        args.outage_seconds = 20.0 if args.quick else 180.0
    raise SystemExit(asyncio.run(hostile(get_settings(), args)))


if __name__ == "__main__":
    main()
