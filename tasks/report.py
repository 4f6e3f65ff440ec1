"""The evaluation report: a Markdown table of metrics against gates, and PNG plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gan.sampling import grid
from tasks.gates import describe

HEADLINE = ["fid_like", "fid_like.std", "fid_like_floor", "fid_like_floor.std", "fid_like_ratio", "fid_like_ratio.std",
            "kid", "kid.std", "precision", "recall", "density",
            "coverage", "tstr_accuracy", "tstr_accuracy.std", "trtr_accuracy", "dcr_share", "near_copy_share", "mia_auc"]


def rows(metrics: dict[str, float], thresholds: dict[str, dict]) -> list[dict]:
    """Headline metrics in a fixed order with threshold and verdict (table artifact rows)."""
    out = []
    for key in HEADLINE:
        if key not in metrics:
            continue
        gate = thresholds.get(key)
        if gate is None:
            limit, verdict, derived = "", "", ""
        else:
            limit, verdict, derived = describe(gate), ("pass" if gate["passed"] else "FAIL"), gate.get("derived", "")
        out.append({"metric": key, "value": round(float(metrics[key]), 6), "threshold": limit, "gate": verdict,
                    "derived from": derived})
    return out


def markdown(name: str, run_id: str, metrics: dict[str, float], thresholds: dict[str, dict],
             extractor_hash: str, num_samples: int) -> str:
    failed = [k for k, g in thresholds.items() if not g["passed"]]
    lines = [f"# Evaluation of `{name}` (run `{run_id}`)", "",
             f"**Gates: {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}**", "",
             "| metric | value | threshold | gate | threshold derived from |", "|---|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['value']:.4f} | {r['threshold']} | {r['gate']} | {r['derived from']} |"
              for r in rows(metrics, thresholds)]
    per_class = sorted(k for k in metrics if ".class_" in k)
    if per_class:
        classes = sorted({k.rsplit("_", 1)[1] for k in per_class}, key=int)
        lines += ["", "Per class:", "", "| class | coverage | fid_like |", "|---|---|---|"]
        lines += [f"| {c} | {metrics.get(f'coverage.class_{c}', float('nan')):.3f} | "
                  f"{metrics.get(f'fid_like.class_{c}', float('nan')):.3f} |" for c in classes]
    count = int(metrics.get("fid_like.count", 0))
    lines += ["", f"`fid_like_floor` is the same distance between real train and real holdout images: what a "
              f"perfect generator would score. Both are measured at {count} images a side, averaged over random "
              "subsets (`.std`: their spread), so that the ratio means the same on a dataset of any size. "
              "`tstr_accuracy` is the mean of classifiers trained on the generated images from successive seeds "
              "(`.std`: their spread), gated relative to `trtr_accuracy` (one such classifier trained on real data); "
              "`kid` is reported but not gated unless a policy sets `max_kid` (its real-vs-real value is about 0). "
              f"{num_samples} generated images were scored.",
              "", (f"Differential privacy: the generator was trained with DP-SGD at ε = {metrics['epsilon']:.4g}, which "
                   "covers the train split only; these scores, the gate decision and the near-copy filter use the real "
                   "holdout, outside that guarantee." if "epsilon" in metrics else
                   "Differential privacy: none (ε null): no formal guarantee; the privacy rows are empirical."),
              f"Feature extractor sha256: `{extractor_hash}` (scores from other extractors are not comparable)."]
    return "\n".join(lines) + "\n"


def class_grid(images: np.ndarray, labels: np.ndarray | None, per_class: int = 10) -> np.ndarray:
    """One row of samples per class (or a square grid when unlabelled), uint8 (rows, cols, C)."""
    if labels is None:
        return grid(images[:per_class * per_class])
    picks = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    per_class = min(per_class, *(len(p) for p in picks))  # as many columns as the rarest class allows
    return grid(images[np.concatenate([p[:per_class] for p in picks])], nrow=per_class)


def save_picture(picture: np.ndarray, path: Path, min_tile: int = 32, tile: int = 0) -> None:
    """Save a uint8 (rows, cols, C) picture, blown up so that small images can be seen."""
    scale = max(1, min_tile // tile) if tile else 1
    picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture).save(path)


def distance_histogram(distances: dict[str, np.ndarray], threshold: float | None, path: Path) -> None:
    """Histograms of synthetic→train and holdout→train nearest-neighbour distances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    hi = max(float(np.percentile(d, 99.5)) for d in distances.values())
    bins = np.linspace(0, hi, 60)
    for label, d in distances.items():
        ax.hist(d, bins=bins, density=True, alpha=0.55, label=label.replace("_", " "))
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label="near-copy threshold")
    ax.set_xlabel("distance to the nearest train record (pixel space)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
