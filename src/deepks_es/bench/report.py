"""``bench.md``: the benchmark results as markdown tables, ratios first."""

from __future__ import annotations

import numpy as np

from .profile import PARTS


def _system(row: dict) -> str:
    return f"{row['system']} {row['molecules']}"


def _singles(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(_system(r), r["method"]): r for r in results if r["kind"] == "single" and "error" not in r}


def _ratio(numerator: dict | None, denominator: dict | None) -> str:
    if numerator is None or denominator is None:
        return "–"
    return f"{numerator['wall_s'] / denominator['wall_s']:.2f}"


def _members(row: dict) -> str:
    every = row.get("committee_every")
    return "the whole committee" if every is None else f"member 0, as between committee steps every {every}"


def correction_share(row: dict) -> float:
    """Fraction of a DeePKS-ES step spent in the correction (descriptors, network, V_delta, its forces)."""
    return (row["parts_s"]["correction"] + row["parts_s"]["correction_gradient"]) / row["wall_s"]


def ratio_table(results: list[dict]) -> list[str]:
    singles = _singles(results)
    systems = list(dict.fromkeys(system for system, _ in singles))
    lines = ["| system | DeePKS-ES / PBE | HSE06 / DeePKS-ES | correction share of the DeePKS-ES step | "
             "DeePKS-ES (cold) / surrogate step with levels and DOS | DeePKS-ES (cold) / surrogate force step |",
             "|---|---|---|---|---|---|"]
    for system in systems:
        deepks = singles.get((system, "DeePKS-ES"))
        share = "–" if deepks is None else f"{100 * correction_share(deepks):.1f} %"
        hse = singles.get((system, "HSE06"))
        hse_note = "" if hse is None or hse["forces"] else " (energy only)"
        surrogate = singles.get((system, "surrogate"))
        force_step = None if surrogate is None or "force_wall_s" not in surrogate else {"wall_s": surrogate["force_wall_s"]}
        lines.append(f"| {system} | {_ratio(deepks, singles.get((system, 'PBE')))} | "
                     f"{_ratio(hse, deepks)}{hse_note} | {share} | {_ratio(deepks, surrogate)} | "
                     f"{_ratio(deepks, force_step)} |")
    return lines


def single_table(results: list[dict]) -> list[str]:
    parts = [p for p in PARTS] + ["other"]
    lines = ["| system | method | atoms | SCF cycles | wall (s) | s/cycle | peak memory (MiB) | "
             + " | ".join(parts) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(parts)]
    for r in results:
        if r["kind"] != "single":
            continue
        if "error" in r:
            lines.append(f"| {_system(r)} | {r['method']} | failed: {r['error']} |")
            continue
        flag = "" if r["converged"] else " (not converged)"
        forces = "" if r["forces"] else ", energy only"
        if "force_wall_s" in r:
            forces += f" ({_members(r)}; with levels and DOS; force step {r['force_wall_s']:.3f} s)"
        lines.append(f"| {_system(r)} | {r['method']}{forces} | {r['natoms']} | {r['scf_cycles']}{flag} | "
                     f"{r['wall_s']:.3f} | {r['wall_s'] / max(r['scf_cycles'], 1):.3f} | {r['peak_rss_mib']:.0f} | "
                     + " | ".join(f"{r['parts_s'].get(p, 0.0):.3f}" for p in parts) + " |")
    return lines


def _of_kind(results: list[dict], kind: str, what: str) -> tuple[list[dict], list[str]]:
    """(the results of ``kind``, the failure line of the first that failed, or nothing)."""
    rows = [r for r in results if r["kind"] == kind]
    failed = [r for r in rows if "error" in r]
    return rows, [f"{what} failed: {failed[0]['error']}"] if failed else []


def md_table(results: list[dict], extrapolation: str) -> list[str]:
    rows, lines = _of_kind(results, "md", "MD segment")
    if lines:
        return lines
    for r in rows:
        cycles = np.array([s["scf_cycles"] for s in r["steps"]])
        wall = np.array([s["wall_s"] for s in r["steps"]])
        checks = r["checks"]
        lines += [f"NVT MD, {_system(r)} ({r['natoms']} atoms), DeePKS-ES, {len(cycles)} steps of 0.5 fs at 300 K; "
                  f"peak memory {r['peak_rss_mib']:.0f} MiB; unconverged steps: "
                  f"{sum(not s['converged'] for s in r['steps'])}.", "",
                  "| start of each step's SCF | mean SCF cycles | max SCF cycles | s/step | max force error (meV/Å) |",
                  "|---|---|---|---|---|",
                  f"| extrapolated ({extrapolation}) | {cycles.mean():.2f} | {cycles.max()} | "
                  f"{wall.mean():.2f} | {max((c['force_error_mev_a'] for c in checks), default=float('nan')):.3f} |"]
        if checks:
            lines.append(f"| cold (PySCF guess), steps {', '.join(str(c['step']) for c in checks)} | "
                         f"{np.mean([c['cold_scf_cycles'] for c in checks]):.2f} | "
                         f"{max(c['cold_scf_cycles'] for c in checks)} | "
                         f"{np.mean([c['cold_wall_s'] for c in checks]):.2f} | "
                         f"{max(c['cold_force_error_mev_a'] for c in checks):.3f} |")
    return lines


def tolerance_table(results: list[dict]) -> list[str]:
    rows, lines = _of_kind(results, "tolerance", "tolerance scan")
    if lines:
        return lines
    for r in rows:
        lines += [f"Force error vs SCF tolerance, {_system(r)}, DeePKS-ES, cold starts, against a fully converged "
                  "SCF (1e-12 Ha):", "", "| conv_tol (Ha) | SCF cycles | max force error (meV/Å) |", "|---|---|---|"]
        lines += [f"| {s['conv_tol']:.0e} | {s['scf_cycles']} | {s['force_error_mev_a']:.4f} |" for s in r["scan"]]
    return lines


def scaling_exponent(rows: list[dict], key: str, smallest: int) -> float | None:
    """Least-squares slope of log(``key``) against log(atoms) over the rows of at least ``smallest`` waters."""
    points = [(r["natoms"], r[key]) for r in rows if r["molecules"] >= smallest and key in r]
    if len(points) < 2:
        return None
    atoms, times = np.log(np.array(points)).T
    return float(np.polyfit(atoms, times, 1)[0])


def scaling_table(results: list[dict]) -> list[str]:
    rows, lines = _of_kind(results, "scaling", "scaling scan")
    rows = [r for r in rows if "error" not in r]
    if not rows:
        return lines
    lines += [f"Surrogate MD step ({_members(rows[0])}; median of 3 after a warm-up) on replicas of the shipped 64-water "
              "box; peak memory of the measuring process.", "",
              "| waters | atoms | energy + forces + virial (s) | peak (MiB) | + H, levels, DOS (s) | peak (MiB) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        full = (f"{r['observables_wall_s']:.2f} | {r['observables_peak_rss_mib']:.0f}" if "observables_wall_s" in r
                else "– | –")
        lines.append(f"| {r['molecules']} | {r['natoms']} | {r['forces_wall_s']:.2f} | "
                     f"{r['forces_peak_rss_mib']:.0f} | {full} |")
    for key, text in (("forces_wall_s", "energy + forces"), ("observables_wall_s", "with observables")):
        for smallest in (256, 0):
            exponent = scaling_exponent(rows, key, smallest)
            if exponent is not None:
                lines.append(f"\nFitted exponent, time ∝ atoms^p, {text}, from "
                             f"{'256' if smallest else 'the smallest'} waters up: p = {exponent:.2f}")
                break
    return lines


def _gradient_tolerance(plan: dict) -> str:
    grad = plan.get("conv_tol_grad")
    return "" if grad is None else f", orbital gradient {grad:.2g} Ha"


def markdown_report(data: dict) -> str:
    results, plan, machine = data["results"], data["plan"], data["machine"]
    sections = [
        "# deepks-es bench", "",
        f"{machine['cpus']} CPUs ({machine['processor']}), PySCF {machine['pyscf']} with {machine['pyscf_threads']} "
        f"threads, torch {machine['torch']}; model {plan['model']}; SCF tolerance {plan['conv_tol']:.0e} Ha"
        f"{_gradient_tolerance(plan)}; single points start from PySCF's guess and include analytic forces.", "",
        "## Ratios (wall time of one energy + forces step, same geometry, same run)", "", *ratio_table(results), "",
        "## Single points: where the time goes (s)", "", *single_table(results), "",
        "## MD segment", "", *md_table(results, plan["extrapolation"]), "",
        "## SCF tolerance and forces", "", *tolerance_table(results), "",
        "## Surrogate scaling", "", *scaling_table(results), "",
    ]
    return "\n".join(sections)
