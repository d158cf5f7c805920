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


def table(heading: str, columns: list[str], rows: list[list[str]], r: dict) -> list[str]:
    """A titled markdown table of result cells, followed by the results file's provenance."""
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return [heading, "", line(columns), "|" + "---|" * len(columns), *map(line, rows), "", provenance(r), ""]


def registration_table(name: str, title: str) -> list[str]:
    r = load(name)
    if r is None:
        return []
    b = r["budget"]
    heading = (f"**{title}** — {b['steps']} steps of batch {b['batch_size']}, {b['num_points']} points, seeds "
               f"{', '.join(map(str, b['seeds']))} (mean ± std over seeds).")  # fmt: skip
    columns = ["arm", "test", "ICP", "RRE (deg)", "MSE(Euler) (deg²)", "MSE(t)", "success", "passes used"]
    rows = [[s["arm"], s["protocol"], s["icp"] or "—", pm(s["rre_deg_mean"], ".3f"), pm(s["euler_mse_deg2"], ".3g"),
             pm(s["t_mse"], ".2e"), f"{pm(s['success_rate'], '.1f', 100)}%", pm(s["passes_mean"], ".2f")]
            for s in r["summary"]]  # fmt: skip
    return table(heading, columns, rows, r)


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


def augmentation(budget: dict) -> str:
    """', shifts <= 2 px, rotations <= 10 deg, zoom +-10%' where the results record more than shifts."""
    a = budget.get("augment", {})
    if not a.get("rotate") and not a.get("zoom"):
        return ""
    return f", shifts ≤ {a['shift']} px, rotations ≤ {a['rotate']:g}°, zoom ± {100 * a['zoom']:g}%"


def lstm_table(name: str) -> list[str]:
    r = load(name)
    if r is None:
        return []
    b = r["budget"]
    heading = (f"**LSTM on {b['mode']}-by-{b['mode']} MNIST** — {b['epochs']} epochs ({b['steps']} steps of batch "
               f"{b['batch_size']}), hidden {b['config']['hidden']}{augmentation(b)}, seeds "
               f"{', '.join(map(str, b['seeds']))}; {r['data']}.")  # fmt: skip
    columns = ["arm", "test accuracy (10k digits)", "validation accuracy", "per seed (test)"]
    rows = [[s["arm"], f"{pm(s['accuracy'], '.2f', 100)}%", f"{pm(s['val_accuracy'], '.1f', 100)}%",
             ", ".join(f"{100 * x['accuracy']:.2f}" for x in r["runs"] if x["arm"] == s["arm"])]
            for s in r["summary"]]  # fmt: skip
    return table(heading, columns, rows, r)


def homography_table(name: str, title: str) -> list[str]:
    r = load(name)
    if r is None:
        return []
    b = r["budget"]
    trained = next(x for x in r["runs"] if x.get("train_device"))
    start = f"from `{b['init']['model']}`, " if b.get("init") else ""
    budget = f"{b['regression_steps']} regression + {b['steps']} feature steps of batch {b['batch_size']}"
    if b.get("trained"):  # steps as run, per arm and seed (a time limit may have stopped runs early)
        budget = "steps done per seed: " + "; ".join(
            f"{arm} {'/'.join(map(str, t['done_steps']))} (batch {t['batch_size']}"
            f"{', pairs made on the GPU' if t.get('pairs_on_device') else ''})" for arm, t in b["trained"].items())
    heading = (f"**{title}** — {start}{budget}, seeds {', '.join(map(str, b['seeds']))}, trained on "
               f"{trained['train_device']} (torch {trained['train_torch']}); {r['data']}. PE in px, SR in % of pairs, "
               "time per pair on the CPU below.")  # fmt: skip
    columns = ["method", "test pairs", "PE mean", "PE median", "SR < 0.5", "SR < 1", "SR < 3", "SR < 10", "LK diverged", "ms"]
    rows = [[s["arm"], s["test"], *(pm(s[k], ".1f") for k in ("pe_mean", "pe_median", "sr_0.5", "sr_1", "sr_3", "sr_10")),
             f"{pm(s['lk_diverged_rate'], '.0f', 100)}%", pm(s["time_ms_median"], ".0f")] for s in r["summary"]]  # fmt: skip
    return table(heading, columns, rows, r)


def sr_1_3(sr: dict) -> str:
    """'SR<1 / SR<3' of a homography result, in %."""
    return f"{sr['1']:.1f} / {sr['3']:.1f}"


def lk_basin_table() -> list[str]:
    r = load("lk_basin")
    if r is None:
        return []
    heading = (f"**The LK basin of the shipped models** — LK started from the true corners moved by the given mean "
               f"distance, instead of from the regression; {r['data']}. Cells: SR < 1 px / SR < 3 px (% of pairs).")
    models = r["models"]
    columns = ["start error (px)", *(label(m["model"]) for m in models)]
    rows = [[f"{row['start_error_px']:g}", *(sr_1_3(m["rows"][i]["sr"]) for m in models)] for i, row in enumerate(models[0]["rows"])]
    return table(heading, columns, rows, r)


def photometric_table() -> list[str]:
    r = load("homography_photometric")
    if r is None:
        return []
    heading = (f"**Two exposures** — the same test pairs as made (DeepLK protocol) and with `--photometric` (template "
               f"gain 0.8–1.2, offset ±0.1, noise σ 0.02 on both); {r['data']}. Cells: SR < 1 px / SR < 3 px (%); "
               "first guess: the regression's median corner error (px), as made / two exposures.")
    models = list(dict.fromkeys(x["model"] for x in r["runs"]))
    run = lambda m, ph: next(x for x in r["runs"] if x["model"] == m and x["photometric"] == ph)  # noqa: E731
    guess = lambda m: " / ".join(f"{run(m, ph)['pe_regression_median']:.1f}" for ph in (False, True))  # noqa: E731
    rows = [[label(m), sr_1_3(run(m, False)["sr"]), sr_1_3(run(m, True)["sr"]), "–" if m == "sift" else guess(m)] for m in models]
    return table(heading, ["method", "as made", "two exposures", "first guess"], rows, r)


def label(model: str) -> str:
    return {"none": "no network (ICP only)"}.get(model, model.rsplit("/", 1)[-1])


def lidar_pairs_table() -> list[str]:
    r = load("lidar_pairs")
    if r is None:
        return []
    lines = []
    for variant, runs in r["results"].items():
        models = list(runs)
        lines += [f"**Wide-baseline pairs, {variant}** — every pair (i, i+g) of {r['data']} registered from the "
                  "identity; success = RTE < 0.6 m and RRE < 5 deg; cells: success % (median ms per pair).", "",
                  "| gap | pairs | " + " | ".join(label(m) for m in models) + " |", "|---|---|" + "---|" * len(models)]  # fmt: skip
        for g in sorted(runs[models[0]]["per_gap"], key=int):
            cells = [f"{100 * runs[m]['per_gap'][g]['success_rate']:.0f}% ({runs[m]['per_gap'][g]['time_ms_median']:.0f})"
                     for m in models]  # fmt: skip
            lines.append(f"| {g} | {runs[models[0]]['per_gap'][g]['pairs']} | " + " | ".join(cells) + " |")
        lines.append(f"| all | {runs[models[0]]['pairs']} | " + " | ".join(
            f"**{100 * runs[m]['success_rate']:.1f}%** ({runs[m]['time_ms']['median']:.0f})" for m in models) + " |")
        lines.append("| network / prior / fallback | | " + " | ".join(
            "{network:.0%} / {prior:.0%} / {fallback:.0%}".format(**runs[m]["status_rates"]) for m in models) + " |")
        lines.append("")
    return lines + [provenance(r), ""]


def icp_gate_table(name: str, title: str) -> list[str]:
    """One row per pipeline setting tried on the held-out simulated pairs (bench/icp_gate.py)."""
    r = load(name)
    if r is None:
        return []
    heading = (f"**{title}** — {r['data']}, every pair 1–9 scans apart registered from the identity; success = RTE "
               "< 0.6 m and RRE < 5 deg.")  # fmt: skip
    rows = [[label(x["model"]), x.get("net_icp") or x["icp"],
             "–" if x["net_icp_max_dist"] is None else f"{x['net_icp_max_dist']:g} m",
             str(x["passes"] or "–"), "on" if x["fallback"] else "off",
             f"{100 * x['success_rate']:.1f}%" + (f" ({100 * x['fallback_rate']:.1f}%)" if x["fallback"] else ""),
             " ".join(f"{100 * v:.0f}" for v in x["per_gap"].values()), f"{x['time_ms_median']:.0f}"]
            for x in r["results"]]  # fmt: skip
    columns = ["model", "ICP (the network's)", "first gate", "passes", "fallback", "success (fallback)", "per gap 1–9 (%)",
               "median ms"]  # fmt: skip
    return table(heading, columns, rows, r)


def lidar_network_error_table() -> list[str]:
    r = load("lidar_network_error")
    if r is None:
        return []
    models = list(r["results"])
    first = r["results"][models[0]]
    heading = (f"**The LiDAR network alone** — every pair (i, i+g) of {r['data']}, the network's passes from the identity, "
               "no ICP; cells: median RTE m / RRE deg against the truth. The identity column is the motion itself. "
               "Network time per pair (median, one thread): " + ", ".join(
                   f"{label(m)} {ms:.0f} ms" for m, ms in r.get("network_ms_median", {}).items()) + ".")  # fmt: skip
    cell = lambda row, who: f"{row[who + '_rte_m_median']:.2f} / {row[who + '_rre_deg_median']:.1f}"  # noqa: E731
    rows = [[g, str(first[g]["pairs"]), *(cell(r["results"][m][g], "network") for m in models), cell(first[g], "identity")]
            for g in first]  # fmt: skip
    return table(heading, ["gap", "pairs", *(label(m) for m in models), "identity"], rows, r)


def odometry_mode(run: dict) -> str:
    """', scan-to-scan', ', keyframes 3 m' or ', local map of 6 keyframes 3 m apart' for our runs."""
    distance, keyframes = run.get("keyframe_distance"), run.get("local_map_keyframes") or 1
    if distance is None:
        return ""
    if distance == 0:
        return ", scan-to-scan"
    return f", keyframes {distance:g} m" if keyframes == 1 else f", local map of {keyframes} keyframes {distance:g} m apart"


def lidar_odometry_table(name: str, title: str) -> list[str]:
    r = load(name)
    if r is None:
        return []
    def cell(v, spec, scale=1.0):  # noqa: E306
        return "–" if v is None else format(v * scale, spec)

    heading = (f"**{title}** — one thread per method; KISS-ICP {r['kiss_icp']['version']} ({r['kiss_icp']['voxel_size']} "
               "m voxel, no deskew).")  # fmt: skip
    columns = ["sequence", "method", "frames", "RTE mean (cm)", "RRE mean (deg)", "ATE (m)", "t_err (%)",
               "r_err (deg/100 m)", "median ms", "p95 ms", "peak MB"]  # fmt: skip
    rows = [[x["sequence"], f"{label(x['method'])}{odometry_mode(x)}", str(x["frames"]), cell(x["rte_m_mean"], ".1f", 100),
             cell(x["rre_deg_mean"], ".3f"), cell(x["ate_m"], ".2f"), cell(x["t_err_pct"], ".2f"),
             cell(x["r_err_deg_per_100m"], ".2f"), f"{x['time_ms']['median']:.0f}", f"{x['time_ms']['p95']:.0f}",
             f"{x['peak_rss_mb']:.0f}"] for x in r["runs"]]  # fmt: skip
    return table(heading, columns, rows, r)


def main() -> None:
    out = []
    out += registration_table("landscape_kinds", "Landscape kinds (DECISIONS D1), one seed, small budget")
    out += registration_table("dlc_vs_dcp", "DCP vs DLC+DCP on `shapes`")
    out += step_cost_table()
    out += registration_table("prnet_partial", "PRNet vs DLC+PRNet, trained partial-to-partial")
    out += lstm_table("lstm_pixel")
    out += lstm_table("lstm_row")
    out += lstm_table("lstm_pixel_aug10")
    out += lstm_table("lstm_pixel_aug15")
    out += homography_table("homography", "Homography, DLC vs DeepLK's loss")
    out += homography_table("homography_finetune", "Homography, fine-tuning the shipped model's pyramids")
    out += homography_table("homography_regression", "Homography, 4,000 more regression steps for the shipped model")
    out += homography_table("homography_v3", "Homography, a grid-pooled regression trained on the GPU's own pairs")
    out += homography_table("homography_v4_cpu", "Homography, the current regression (LayerNorm, standardised inputs) from scratch on this CPU")
    out += lk_basin_table()
    out += photometric_table()
    out += icp_gate_table("icp_gate", "ICP method and first gate, on held-out simulated pairs")
    out += icp_gate_table("icp_gate_passes", "Network passes and fallback, on held-out simulated pairs")
    out += icp_gate_table("icp_gate_fallback_5498a28", "The fallback rule before this change (commit 5498a28)")
    out += lidar_pairs_table()
    out += lidar_network_error_table()
    out += lidar_odometry_table("lidar_odometry", "Consecutive-scan odometry on real KITTI scans")
    out += lidar_odometry_table("lidar_odometry_long", "A long simulated drive")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
