import sys
import time

import numpy as np

sys.path.insert(0, "benchmarks")
from planner_scale import planted

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.planning import Problem, solve
from adaptive_resnet.planning import branch_price as bp
from adaptive_resnet.planning.colgen import ColumnGeneration
from adaptive_resnet.planning.routing import best_unconstrained
from adaptive_resnet.profile import profile_model

profile, table = profile_model("resnet50", 224), AccuracyTable.paper()
n, r = map(int, sys.argv[1:3])
sc, up = planted(n, r, n * 1000 + r, profile, table)
p = Problem(sc, profile, table)
ex = solve(Problem(sc, profile, table), "exact", time_limit_s=3)
unc = best_unconstrained(p); floors = np.array([u[0] for u in unc])
seed = [(q.candidate, q.devices) for q in ex.requests]
cg = ColumnGeneration(p, seed, floors); root = cg.run(time.perf_counter() + 20)
print("plan", ex.evaluation.objective, "root", root.bound)
fixed, segs = {}, {}
for depth in range(200):
    x = cg.master.x; counts = np.array([x[k] if k < len(x) else 0 for k in cg.master.columns])
    kids = bp._branch_segments(cg, counts, segs) or bp._branch_hosting(p, cg.master.hosting_values(x), fixed)
    if not kids:
        plan = bp._integral_plan(cg, counts)
        print("leaf; integral plan:", None if plan is None else (p.evaluate(plan).objective, p.evaluate(plan).feasible)); break
    res = []
    for f, s in kids:
        cg.at_node({**fixed, **f}, {**segs, **s}); rr = cg.run(time.perf_counter() + 10)
        res.append((rr.bound, rr.converged, f, s))
    desc = [(f"{b:.4f}", c, f or s) for b, c, f, s in res]
    print(depth, desc, flush=True) if depth % 10 == 0 or min(x[0] for x in res) > 0.6291 else None
    b, c, f, s = min(res, key=lambda t: t[0])
    fixed, segs = {**fixed, **f}, {**segs, **s}
    cg.at_node(fixed, segs); cg.run(time.perf_counter() + 10)
