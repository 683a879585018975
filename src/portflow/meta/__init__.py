"""Phase 3 — the meta-portfolio (SPEC §7): sleeves in parallel, meta-returns, risk parity
across sleeves, recursive flattening to assets.

    tree.py      the sleeve tree of a meta profile (leaves = sleeve profiles, inner = metas)
    sleeves.py   one leaf sleeve as an executor task: a full Phase 2, thread-capped
    returns.py   each sleeve's return stream and their calendar alignment (meta-returns)
    allocate.py  meta-optimisation over the sleeve streams (Phase 2's allocators, sleeve bounds)
    flatten.py   sleeve weights x sleeve holdings -> asset weights; the conservation gate
    report.py    the meta report.html
    pipeline.py  the runner: `flow-meta-production`
"""
