import sys
import time

import numpy as np

sys.path.insert(0, "benchmarks")
from adaptive_resnet.planning.branch_price import branch_and_price
from planner_scale import planted

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.planning import Problem, solve
from adaptive_resnet.planning.colgen import ColumnGeneration
from adaptive_resnet.planning.routing import best_unconstrained
from adaptive_resnet.profile import profile_model

profile, table = profile_model("resnet50", 224), AccuracyTable.paper()
cases = [tuple(map(int, a.split("x"))) for a in sys.argv[2:]]
bp_s = float(sys.argv[1])
solve(Problem(planted(10, 3, 10003, profile, table)[0], profile, table), "fast")
for n, r in cases:
    sc, up = planted(n, r, n * 1000 + r, profile, table)
    p = Problem(sc, profile, table)
    ex = solve(Problem(sc, profile, table), "exact", time_limit_s=5)
    inc = ex.evaluation.objective
    unc = best_unconstrained(p)
    floors = np.array([u[0] for u in unc])
    seed = [(q.candidate, q.devices) for q in ex.requests] + [(c, unc[c][2]) for c in np.argsort(floors)[:5]]
    t = time.perf_counter()
    cg = ColumnGeneration(p, seed, floors)
    root = cg.run(time.perf_counter() + 20)
    t1 = time.perf_counter()
    print(f"N{n}R{r}: exact5s plan {inc:.4f} lb {ex.lower_bound:.4f}; root {root.bound:.4f} conv {root.converged} {t1-t:.2f}s rounds {root.rounds}", flush=True)
    for budget in (bp_s,):
        bp = branch_and_price(cg, root.bound, inc, time.perf_counter() + budget)
        best_plan = min([p.evaluate(pl).objective for pl in bp.plans if p.evaluate(pl).feasible] + [inc])
        print(f"   B&P {budget}s: bound {bp.bound:.4f} nodes {bp.nodes} open {bp.open_nodes} plans {len(bp.plans)} best {best_plan:.4f} gap {best_plan/bp.bound-1:.2%} cols {len(cg.columns)}", flush=True)
