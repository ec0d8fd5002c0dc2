"""Policy evaluation throughput: a realistic 20-rule policy over generated traffic.

    .venv/bin/python bench/bench_policy.py             # 1M events
    .venv/bin/python bench/bench_policy.py --n 200000 --policy my-policy.yaml

Times, over the same events: attributes from events (``kaudit.policy.from_event``), the
evaluator with its decision cache (``Evaluator.evaluate``), without it
(``evaluate_uncached``), and both together, the way a filter on ingest runs. Also prints
what the policy would keep. Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_of, machine_line, rate  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="events (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", type=Path, default=HERE / "policy-20-rules.yaml")
    args = ap.parse_args()
    print(machine_line())

    try:
        from kaudit import policy as kpolicy
    except ImportError as exc:
        print(f"kaudit.policy is not available yet ({exc}); nothing to measure")
        return
    missing = [
        name
        for name in ("Evaluator", "from_event", "load_policy_bytes")
        if not hasattr(kpolicy, name)
    ]
    if missing:
        print(f"kaudit.policy lacks {', '.join(missing)}; nothing to measure")
        return

    from kaudit.traffic import generate

    pol = kpolicy.load_policy_bytes(args.policy.read_bytes(), str(args.policy))
    print(f"policy: {args.policy.name}, {len(pol.rules)} rules")

    t0 = time.perf_counter()
    events = list(generate(args.n, seed=args.seed))
    dt = time.perf_counter() - t0
    n = len(events)
    print(f"traffic: generated {n:,} events in {dt:.1f} s = {n / dt:,.0f} events/s")
    print(f"best of {args.repeat}\n")

    from_event = kpolicy.from_event
    t_attr = best_of(args.repeat, lambda: deque(map(from_event, events), maxlen=0))
    attrs: list[Any] = list(map(from_event, events))
    distinct = len(set(attrs))

    cold = kpolicy.Evaluator(pol)
    decisions: list[Any] = []
    t_cold = best_of(1, lambda: decisions.extend(map(cold.evaluate, attrs)))
    warm = cold
    t_cached = best_of(args.repeat, lambda: deque(map(warm.evaluate, attrs), maxlen=0))
    uncached = getattr(warm, "evaluate_uncached", None)
    t_uncached = (
        best_of(args.repeat, lambda: deque(map(uncached, attrs), maxlen=0))
        if uncached is not None
        else None
    )

    def end_to_end() -> None:
        ev = kpolicy.Evaluator(pol)
        evaluate = ev.evaluate
        for e in events:
            evaluate(from_event(e))

    t_e2e = best_of(args.repeat, end_to_end)

    print(f"distinct attribute tuples: {distinct:,} of {n:,}")
    print(f"  from_event(event) -> Attributes          {rate(n, t_attr)}")
    print(f"  Evaluator.evaluate, first pass (cold)    {rate(n, t_cold)}")
    print(f"  Evaluator.evaluate, cache warm           {rate(n, t_cached)}")
    if t_uncached is not None:
        print(f"  Evaluator.evaluate_uncached (20 rules)   {rate(n, t_uncached)}")
    print(f"  from_event + evaluate, fresh Evaluator   {rate(n, t_e2e)}")

    levels = Counter(getattr(d, "level", d) for d in decisions)
    kept = n - levels.get("None", 0)
    print(f"\nwhat the policy keeps: {kept:,} of {n:,} events ({kept / n:.1%})")
    for level, count in levels.most_common():
        print(f"  {level:<16} {count:>10,}  {count / n:6.1%}")
    rules = Counter(getattr(d, "rule_index", None) for d in decisions)
    top = ", ".join(
        f"#{(i + 1) if i is not None else '-'}: {c / n:.1%}" for i, c in rules.most_common(6)
    )
    print(f"  first matching rule (1-based), top 6: {top}")


if __name__ == "__main__":
    main()
