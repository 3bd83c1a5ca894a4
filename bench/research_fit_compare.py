"""Our fast fitting procedure against the old tool's (``spec``), judged on ALL rows.

For one ML dataset (split ``full``, settings defaults for features and scaling) it fits:

* the Gaussian HMM (default 5 states, diag) with ``fit_procedure`` fast and spec, and reports
  the total log-likelihood per row over every fit row, iterations, convergence and seconds;
* KMeans (default K=5) with both procedures: inertia over every fit row and seconds;
* optionally HDBSCAN on a seeded row subset (``--hdbscan-rows``; spec is quadratic): noise
  share over the subset's rows, clusters found and seconds;

plus the adjusted Rand index between the two procedures' labels. The dataset is an explicit
``--dataset``, or the newest export of a lake built here with ``mf run --until ml_dataset``
from ``--raw-root`` (real bars) or from the generated universe of ``--size``.

    python -m bench.research_fit_compare --size small
    python -m bench.research_fit_compare --raw-root /data/raw --work /tmp/fitcmp
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE_DIR, machine_info, rounded, run_child, say, write_json
from bench.mfrun import pipeline_env
from bench.universe import SIZES, ensure_universe, mf_executable

PROCEDURES = ("fast", "spec")
HMM_VARIANTS: dict[str, dict[str, Any]] = {
    "fast": {},
    "spec": {"fit_procedure": "spec"},
    "fast_all_rows": {"fit_max_rows": 2**62},  # our start and per-row tol, EM on every row
    "fast_abs_tol": {"tol": 1e-3},  # the EM sample and our start, the spec's absolute tol
    "fast_polish1": {"polish_iter": 1},  # the fast fit, then one EM iteration on every row
}
"""HMM fits: the two procedures and two fast variants that each undo one difference."""


def build_dataset(raw: Path, work: Path) -> Path:
    """Newest ML dataset export of the lake under ``work`` (built from ``raw`` if missing)."""
    env = pipeline_env(raw, work)
    os.environ.update({k: v for k, v in env.items() if k.startswith("MF_PIPELINE_")})
    from mf_pipeline.lib.settings import load_settings
    from mf_pipeline.lib.steps.dataset_step import latest_export

    found = latest_export(load_settings())
    if found is not None:
        return found
    say(f"building the lake of {raw} in {work} (mf run --until ml_dataset)")
    child = run_child([mf_executable(), "run", "--until", "ml_dataset"], env=env)
    if child.returncode != 0:
        raise RuntimeError(f"mf run failed:\n{child.stderr[-4000:]}")
    found = latest_export(load_settings())
    if found is None:
        raise RuntimeError(f"no ML dataset export under {work}")
    return found


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def compare_hmm(settings: Any, dataset: Path, states: int,
                variants: list[str]) -> dict[str, Any]:  # fmt: skip
    """HMM ``variants`` on the full-split fit sequences; log-likelihood over all rows."""
    from sklearn.metrics import adjusted_rand_score

    from mf_pipeline.lib.research import hmm as hm
    from mf_pipeline.lib.steps.research import options
    from mf_pipeline.lib.steps.research.prepare import prepare

    prep = prepare(settings, dataset, "full", options.prep_options(settings, "hmm"))
    seqs = hm.build_sequences(prep.fit.frame, prep.fit.X, options.min_sequence_length(settings))
    out: dict[str, Any] = {"rows": seqs.n_rows, "sequences": int(seqs.lengths.size),
                           "features": int(seqs.X.shape[1]), "n_components": states}
    paths = {}
    for proc in variants:
        cfg = options.hmm_config(settings, n_components=states, covariance_type="diag",
                                 **HMM_VARIANTS[proc])
        say(f"HMM {proc}: {seqs.n_rows:,} rows, {states} states")
        wall, fit = _timed(lambda cfg=cfg: hm.fit_hmm(seqs.X, seqs.offsets, cfg))
        paths[proc] = hm.viterbi(fit.params, seqs.X, seqs.offsets)
        out[proc] = {"loglik_per_row_all_rows": fit.loglik_per_row, "loglik": fit.loglik,
                     "n_iter_used": fit.n_iter_used, "converged": fit.converged,
                     "em_rows": fit.em_rows, "tol": fit.tol, "wall_s": wall,
                     "seconds": fit.seconds}
        say(f"  {out[proc]['loglik_per_row_all_rows']:.5f} per row, {fit.n_iter_used} it., "
            f"{wall:.1f} s")
    if "spec" in paths:
        out["ari_viterbi_vs_spec"] = {name: float(adjusted_rand_score(path, paths["spec"]))
                                      for name, path in paths.items() if name != "spec"}
    return out


def cluster_matrix(settings: Any, dataset: Path) -> np.ndarray:
    """The scaled fit matrix of the full split (clustering settings)."""
    from mf_pipeline.lib.steps.research import options
    from mf_pipeline.lib.steps.research.prepare import prepare

    prep = prepare(settings, dataset, "full", options.prep_options(settings, "cluster"))
    return np.ascontiguousarray(prep.fit.X, dtype=np.float64)


def compare_kmeans(settings: Any, X: np.ndarray, k: int) -> dict[str, Any]:
    """Both KMeans procedures on all fit rows; inertia over all rows."""
    from sklearn.metrics import adjusted_rand_score

    from mf_pipeline.lib.research import clustering as cl
    from mf_pipeline.lib.steps.research import options

    out: dict[str, Any] = {"rows": int(X.shape[0]), "features": int(X.shape[1]), "n_clusters": k}
    labels = {}
    for proc in PROCEDURES:
        cfg = options.cluster_config(settings, n_clusters=k, fit_procedure=proc)
        say(f"KMeans {proc}: {X.shape[0]:,} rows, K={k}")
        wall, (model, meta) = _timed(lambda cfg=cfg: cl.fit_kmeans(X, cfg))
        labels[proc] = model.labels_
        inertia = float(((X - model.cluster_centers_[model.labels_]) ** 2).sum())
        out[proc] = {"inertia_all_rows": inertia, "inertia_per_row": inertia / len(X),
                               "init_sample_rows": meta["init_sample_rows"],
                               "n_iter_final": meta["n_iter_final"], "wall_s": wall}
        say(f"  inertia {inertia:,.0f}, {wall:.1f} s")
    out["ari_fast_vs_spec"] = float(adjusted_rand_score(labels["fast"], labels["spec"]))
    out["silhouette"] = compare_silhouette(X, labels["fast"])
    return out


def compare_silhouette(X: np.ndarray, labels: np.ndarray, seeds: int = 5,
                       spec_rows: int = 200_000) -> dict[str, Any]:  # fmt: skip
    """Our 20,000-row sampled silhouette over ``seeds`` samples against one sample of the
    spec's 200,000 rows (same labels): the sampling error the smaller sample costs."""
    from mf_pipeline.lib.research import clustering as cl

    def sampled(rows: int, seed: int) -> tuple[float, float]:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=min(rows, X.shape[0]),
                                                         replace=False))
        return _timed(lambda: cl.silhouette(X[idx], labels[idx]))

    small = [sampled(20_000, seed) for seed in range(seeds)]
    say(f"silhouette on {spec_rows:,} rows")
    big_s, big = sampled(spec_rows, 0)
    values = np.array([v for _, v in small])
    return {"sample_20k_mean": float(values.mean()), "sample_20k_sd": float(values.std(ddof=1)),
            "sample_20k_seconds": float(np.mean([t for t, _ in small])), "seeds": seeds,
            "sample_200k": big, "sample_200k_seconds": big_s}


def compare_hdbscan(X: np.ndarray, settings: Any, k: int, rows: int) -> dict[str, Any]:
    """HDBSCAN fast (fit sample + nearest neighbour) vs spec (all rows) on ``rows`` rows."""
    from sklearn.metrics import adjusted_rand_score

    from mf_pipeline.lib.research import clustering as cl
    from mf_pipeline.lib.steps.research import options

    idx = np.sort(np.random.default_rng(0).choice(X.shape[0], size=min(rows, X.shape[0]),
                                                  replace=False))
    Xs = np.ascontiguousarray(X[idx])
    out: dict[str, Any] = {"rows": int(Xs.shape[0])}
    labels = {}
    for proc in PROCEDURES:
        cfg = options.cluster_config(settings, n_clusters=k, fit_procedure=proc)
        say(f"HDBSCAN {proc}: {Xs.shape[0]:,} rows")
        wall, res = _timed(lambda cfg=cfg: cl.run_clustering(Xs, "hdbscan", cfg))
        lab = res.labels["predict"]
        labels[proc] = lab
        out[proc] = {"noise_share": float((lab < 0).mean()),
                     "clusters": int(np.unique(lab[lab >= 0]).size),
                     "fit_sample_rows": res.model_meta["fit_sample_rows"], "wall_s": wall}
        say(f"  noise {out[proc]['noise_share']:.3f}, {out[proc]['clusters']} clusters, "
            f"{wall:.1f} s")
    out["ari_fast_vs_spec"] = float(adjusted_rand_score(labels["fast"], labels["spec"]))
    return out


def table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (the numbers docs/RESEARCH.md quotes)."""
    h, km, hd = result.get("hmm"), result.get("kmeans"), result.get("hdbscan")
    lines = ["| model | rows (all) | objective over all rows | fast | spec | fast s | spec s |",
             "|---|---:|---|---:|---:|---:|---:|"]
    if h and "fast" in h and "spec" in h:
        lines.append(
            f"| HMM {h['n_components']} states diag | {h['rows']:,} | log-likelihood per row | "
            f"{h['fast']['loglik_per_row_all_rows']:.4f} | "
            f"{h['spec']['loglik_per_row_all_rows']:.4f} | {h['fast']['wall_s']:.1f} "
            f"({h['fast']['n_iter_used']} it.) | {h['spec']['wall_s']:.1f} "
            f"({h['spec']['n_iter_used']} it.) |")
    for name in HMM_VARIANTS:
        if h and name in h and name not in PROCEDURES:
            v = h[name]
            lines.append(f"| HMM variant {name} | {h['rows']:,} | log-likelihood per row | "
                         f"{v['loglik_per_row_all_rows']:.4f} | | {v['wall_s']:.1f} "
                         f"({v['n_iter_used']} it., EM on {v['em_rows']:,} rows) | |")
    if km:
        lines.append(
            f"| KMeans K={km['n_clusters']} | {km['rows']:,} | inertia per row | "
            f"{km['fast']['inertia_per_row']:.4f} | {km['spec']['inertia_per_row']:.4f} | "
            f"{km['fast']['wall_s']:.1f} | {km['spec']['wall_s']:.1f} |")
        sil = km.get("silhouette")
        if sil:
            lines.append(
                f"| silhouette of the KMeans labels | 20,000 / 200,000 (sample) | silhouette | "
                f"{sil['sample_20k_mean']:.4f} ± {sil['sample_20k_sd']:.4f} "
                f"({sil['seeds']} samples) | {sil['sample_200k']:.4f} | "
                f"{sil['sample_20k_seconds']:.1f} | {sil['sample_200k_seconds']:.1f} |")
    if hd:
        lines.append(
            f"| HDBSCAN | {hd['rows']:,} (subset) | noise share | "
            f"{hd['fast']['noise_share']:.3f} | {hd['spec']['noise_share']:.3f} | "
            f"{hd['fast']['wall_s']:.1f} | {hd['spec']['wall_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="generated universe (ignored with --dataset or --raw-root)")
    parser.add_argument("--raw-root", type=Path, help="raw bars folder (e.g. real data)")
    parser.add_argument("--dataset", type=Path, help="an ML dataset parquet to use as is")
    parser.add_argument("--work", type=Path, help="lake folder (default bench/cache/<size>/"
                                                  "fitcompare)")
    parser.add_argument("--states", type=int, default=5)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--hmm-variants", default="fast,spec",
                        help=f"comma-separated subset of {', '.join(HMM_VARIANTS)}")
    parser.add_argument("--hdbscan-rows", type=int, default=60_000,
                        help="rows of the HDBSCAN comparison (spec is quadratic in them)")
    parser.add_argument("--models", default="hmm,kmeans,hdbscan",
                        help="comma-separated subset of hmm, kmeans, hdbscan")
    parser.add_argument("--out", type=Path, help="JSON result (default <work>/"
                                                 "research_fit_compare.json)")
    args = parser.parse_args(argv)

    work = args.work or CACHE_DIR / args.size / "fitcompare"
    source: dict[str, Any] = {}
    if args.dataset:
        dataset, source = args.dataset, {"dataset": str(args.dataset)}
    else:
        raw = args.raw_root
        if raw is None:
            raw, facts = ensure_universe(SIZES[args.size])
            source = {"size": args.size, "universe": facts}
        source["raw_root"] = str(raw)
        dataset = build_dataset(raw, work.resolve())
    from mf_pipeline.lib.settings import load_settings

    settings = load_settings()
    result: dict[str, Any] = {"measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "source": source, "dataset": str(dataset),
                              "machine": machine_info()}
    models = {m.strip() for m in args.models.split(",") if m.strip()}
    if "hmm" in models:
        result["hmm"] = compare_hmm(settings, dataset, args.states,
                                    [v.strip() for v in args.hmm_variants.split(",") if v])
    if models & {"kmeans", "hdbscan"}:
        X = cluster_matrix(settings, dataset)
        if "kmeans" in models:
            result["kmeans"] = compare_kmeans(settings, X, args.k)
        if "hdbscan" in models:
            result["hdbscan"] = compare_hdbscan(X, settings, args.k, args.hdbscan_rows)
    result["loadavg_after"] = list(os.getloadavg())
    out = args.out or work / "research_fit_compare.json"
    write_json(rounded(result, 6), out)
    print(json.dumps(rounded(result, 6), indent=2))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
