"""Markdown tables for the README, made only from bench/results/*.json (so every figure there has a source).

    .venv/bin/python bench/report.py            # prints the tables of every results file present
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pm(stat: dict, spec: str, scale: float = 1.0) -> str:
    """'mean ± std' (or just the value for one seed)."""
    if stat["n"] == 1:
        return format(stat["mean"] * scale, spec)
    return f"{format(stat['mean'] * scale, spec)} ± {format(stat['std'] * scale, spec)}"


def provenance(r: dict) -> str:
    m = r["machine"]
    return f"*{m['cpu']}, {m['cores']} cores, torch {m['torch']}; {r['date'][:10]}; `{r['command']}`*"


def registration_table(name: str, title: str) -> list[str]:
    r = load(name)
    if r is None:
        return []
    b = r["budget"]
    lines = [f"**{title}** — {b['steps']} steps of batch {b['batch_size']}, {b['num_points']} points, seeds "
             f"{', '.join(map(str, b['seeds']))} (mean ± std over seeds).", "",
             "| arm | test | ICP | RRE (deg) | MSE(Euler) (deg²) | MSE(t) | success | passes used |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in r["summary"]:
        lines.append(f"| {s['arm']} | {s['protocol']} | {s['icp'] or '—'} | {pm(s['rre_deg_mean'], '.3f')} | "
                     f"{pm(s['euler_mse_deg2'], '.3g')} | {pm(s['t_mse'], '.2e')} | {pm(s['success_rate'], '.1f', 100)}% | "
                     f"{pm(s['passes_mean'], '.2f')} |")  # fmt: skip
    return lines + ["", provenance(r), ""]


def step_cost_table() -> list[str]:
    r = load("train_step_cost")
    if r is None:
        return []
    t = r["training"]
    lines = [f"**Training step cost** (batch {t['batch_size']}, {t['num_points']} points, {t['model']}):", "",
             "| configuration | s / step | × plain | peak RSS (MB) |", "|---|---|---|---|"]  # fmt: skip
    for name in ("plain", "dlc-label", "dlc-procrustes", "dlc-rerun"):
        x = t[name]
        lines.append(f"| {name} | {x['step_s_median']:.2f} | {x['ratio_to_plain']:.2f} | {x['peak_rss_mb']:.0f} |")
    lines += ["", "**Inference latency, ms (peak RSS MB)** (one 1024-point pair, shipped size, fixed passes, no early stop):",
              "", "| backbone | 1 pass | 2 | 3 | 4 | 5 |", "|---|---|---|---|---|---|"]  # fmt: skip
    for backbone, inf in r["inference"]["backbones"].items():
        lines.append(f"| {backbone} | " + " | ".join(f"{inf[str(n)]['latency_ms_median']:.0f} ({inf[str(n)]['peak_rss_mb']:.0f})"
                                                    for n in range(1, 6)) + " |")  # fmt: skip
    return lines + ["", provenance(r), ""]


def lstm_table(name: str) -> list[str]:
    r = load(name)
    if r is None:
        return []
    b = r["budget"]
    lines = [f"**LSTM on {b['mode']}-by-{b['mode']} MNIST** — {b['epochs']} epochs ({b['steps']} steps of batch "
             f"{b['batch_size']}), hidden {b['config']['hidden']}, seeds {', '.join(map(str, b['seeds']))}; {r['data']}.", "",
             "| arm | test accuracy (10k digits) | validation accuracy | per seed (test) |", "|---|---|---|---|"]  # fmt: skip
    for s in r["summary"]:
        seeds = ", ".join(f"{100 * x['accuracy']:.2f}" for x in r["runs"] if x["arm"] == s["arm"])
        lines.append(f"| {s['arm']} | {pm(s['accuracy'], '.2f', 100)}% | {pm(s['val_accuracy'], '.1f', 100)}% | {seeds} |")
    return lines + ["", provenance(r), ""]


def main() -> None:
    out = []
    out += registration_table("landscape_kinds", "Landscape kinds (DECISIONS D1), one seed, small budget")
    out += registration_table("dlc_vs_dcp", "DCP vs DLC+DCP on `shapes`")
    out += step_cost_table()
    out += registration_table("prnet_partial", "PRNet vs DLC+PRNet, trained partial-to-partial")
    out += lstm_table("lstm_pixel")
    out += lstm_table("lstm_row")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
