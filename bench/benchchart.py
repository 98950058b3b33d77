"""benchchart.py — the chart at the end of each bench/run-*: one SVG per benchmark, libloop beside
each peer of the same run, drawn by scripts/bench-chart (gnuplot) into docs/charts/NAME.svg, which
docs/performance.md links. A missing figure (a peer that did not run) is left out of its cluster."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def chart(name, title, ylabel, series, rows, log=False):
    """series: the runtimes' names; rows: (workload label, [value per runtime or None])."""
    lines = ["\t".join(["workload"] + list(series))]
    for label, values in rows:
        lines.append("\t".join([label] + ["-" if v is None else f"{v:g}" for v in values]))
    out = os.path.join(ROOT, "docs", "charts", name + ".svg")
    cmd = [os.path.join(ROOT, "scripts", "bench-chart"), out, title, ylabel]
    subprocess.run(cmd + (["--log"] if log else []), input="\n".join(lines) + "\n", text=True)
