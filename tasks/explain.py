"""The owner's explanation panels and ``report/index.html``: what the generator recalls or
invents, where its classes are weak, how its latent space is organised, how training went.

The page is one self-contained HTML file (pictures inline as PNG data), so that it renders in a
browser straight from the artifact store. It shows real training images beside samples: it is
for the data owner, in the MLflow run, and never goes to the catalog.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from gan.explain import Neighbours, interpolations, label_sweep
from gan.sampling import grid
from tasks.report import rows

PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7)]  # seeds of the interpolations (and, first of each, the label sweep)
STEPS = 8
K = 3


def neighbour_picture(fake: np.ndarray, train: np.ndarray, nb: Neighbours) -> np.ndarray:
    """A row per sample: the sample, its K nearest train images in pixel space, then in feature
    space (``grid`` with 1 + 2K columns)."""
    tiles = [np.concatenate([fake[i][None], train[nb.pixel_index[r]], train[nb.feature_index[r]]])
             for r, i in enumerate(nb.sample_index)]
    return grid(np.concatenate(tiles), nrow=1 + 2 * K)


def per_class(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """{class: {"coverage": …, "fid_like": …}} from the report's per-class metrics."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if ".class_" in key:
            metric, cls = key.split(".class_")
            out.setdefault(cls, {})[metric] = float(value)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]))


def latent_pictures(G) -> dict[str, np.ndarray]:
    """The interpolation grid (a row per seed pair) and, for conditional models, the label sweep
    (a row per seed, a column per label)."""
    labels = [i % G.cfg.num_classes for i in range(len(PAIRS))] if G.cfg.conditional else None
    paths = interpolations(G, PAIRS, STEPS, labels)
    out = {"interpolations": grid(paths.reshape(-1, *paths.shape[2:]), nrow=STEPS)}
    if G.cfg.conditional:
        sweep = label_sweep(G, [a for a, _ in PAIRS])
        out["label_sweep"] = grid(sweep.reshape(-1, *sweep.shape[2:]), nrow=G.cfg.num_classes)
    return out


def training_figure(history: dict[str, list[tuple[int, float]]], best_step: int | None, path: Path) -> None:
    """Losses and probe scores over steps in one figure, the selected step marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    for key in ("loss_d", "loss_g"):
        if history.get(key):
            steps, values = zip(*history[key])
            ax.plot(steps, values, label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if history.get("probe_score"):
        right = ax.twinx()
        steps, values = zip(*history["probe_score"])
        right.plot(steps, values, "o-", color="tab:green", label="probe_score (FID-like, train)", markersize=3)
        right.set_ylabel("probe score")
        right.legend(loc="upper center", fontsize=8)
    if best_step is not None:
        ax.axvline(best_step, color="k", linestyle="--", linewidth=1, label=f"selected step {best_step}")
    if ax.get_legend_handles_labels()[0]:  # a run with no losses logged and no selected step has none
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _png(picture: np.ndarray, tile: int) -> bytes:
    scale = max(1, 32 // tile)
    picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture).save(buf, format="PNG")
    return buf.getvalue()


def _img(data: bytes, alt: str, key: str) -> str:
    return (f"<img alt='{html.escape(alt)}' data-panel='{key}' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")


def _bars(values: dict[str, dict[str, float]], metric: str) -> str:
    top = max((v.get(metric, 0.0) for v in values.values()), default=1.0) or 1.0
    cells = "".join(
        f"<tr><td>{html.escape(cls)}</td><td><div class='bar' data-metric='{metric}' data-class='{html.escape(cls)}' "
        f"data-value='{v[metric]!r}' style='width:{200 * v[metric] / top:.1f}px'></div></td><td>{v[metric]:.3f}</td></tr>"
        for cls, v in values.items() if metric in v)
    return f"<table class='bars'><tr><th>class</th><th colspan='2'>{metric}</th></tr>{cells}</table>"


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px}"
         ".pass{color:#070}.fail{color:#b00;font-weight:bold}.bar{background:#4a7ab5;height:12px}"
         "img{image-rendering:pixelated;max-width:100%}.bars{display:inline-table;margin-right:2em}")


def page(title: str, metrics: dict[str, float], thresholds: dict[str, dict], pictures: dict[str, bytes],
         nb: Neighbours, classes: dict[str, dict[str, float]]) -> str:
    """The owner's page: metrics against gates, then each panel."""
    table = "".join(f"<tr><td>{r['metric']}</td><td>{r['value']:.4g}</td><td>{html.escape(r['threshold'])}</td>"
                    f"<td class='{'fail' if r['gate'] == 'FAIL' else 'pass'}'>{r['gate']}</td>"
                    f"<td>{html.escape(r['derived from'])}</td></tr>" for r in rows(metrics, thresholds))
    dist = "".join(f"<tr><td>{int(i)}</td><td>{' · '.join(f'{d:.2f}' for d in pd_)}</td><td>{' · '.join(f'{d:.2f}' for d in fd)}</td></tr>"
                   for i, pd_, fd in zip(nb.sample_index, nb.pixel_distance, nb.feature_distance))
    show = lambda key, alt: _img(pictures[key], alt, key) if key in pictures else ""
    body = [
        f"<h1>{html.escape(title)}</h1><p>For the data owner: this page shows real training images. It stays in the "
        "MLflow run; the catalog never gets it.</p>",
        f"<h2>Metrics against the gates</h2><table><tr><th>metric</th><th>value</th><th>threshold</th><th>gate</th>"
        f"<th>threshold derived from</th></tr>{table}</table>",
        "<h2>Nearest real neighbours</h2><p>Each row: a sample, its 3 nearest train images in pixel space, then its 3 "
        "nearest in feature space. The first rows are the samples nearest to any train record (the privacy metrics' "
        f"worst cases), then a fixed set. For scale, a real holdout image's nearest train image is typically "
        f"{nb.typical:.2f} away (median) and 1% are nearer than {nb.near_copy:.2f} (the near-copy threshold).</p>",
        show("neighbours", "samples beside their nearest train images"),
        f"<table><tr><th>sample</th><th>pixel distances</th><th>feature distances</th></tr>{dist}</table>",
        "<h2>Per class</h2>", show("by_class", "samples, a row per class"),
        "<div>" + _bars(classes, "coverage") + _bars(classes, "fid_like") + "</div>" if classes else "",
        "<h2>Latent space</h2><p>Interpolations between pairs of seeds (the ends are those seeds' samples):</p>",
        show("interpolations", "interpolations between seed pairs"),
        ("<p>The same noise under every label (a row per seed, a column per label): what the label changes and what "
         "the noise keeps.</p>" + show("label_sweep", "one seed across every label")) if "label_sweep" in pictures else "",
        "<h2>Training</h2>", show("training", "losses and probe scores over steps"),
        "<h2>Privacy</h2>", show("distances", "nearest-train distances of samples and of the holdout"),
    ]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write_panels(out: Path, title: str, G, fake: np.ndarray, train: np.ndarray, nb: Neighbours,
                 metrics: dict[str, float], thresholds: dict[str, dict], by_class: np.ndarray,
                 history: dict[str, list[tuple[int, float]]], best_step: int | None) -> None:
    """Write the panels (PNG), their data (``panels.json``) and ``index.html`` into ``out``."""
    tile = G.cfg.height
    pictures = {"neighbours": _png(neighbour_picture(fake, train, nb), tile), "by_class": _png(by_class, tile)}
    pictures |= {k: _png(v, tile) for k, v in latent_pictures(G).items()}
    training_figure(history, best_step, out / "training.png")
    pictures["training"] = (out / "training.png").read_bytes()
    if (out / "nearest_train_distances.png").exists():
        pictures["distances"] = (out / "nearest_train_distances.png").read_bytes()
    for key in ("neighbours", "interpolations", "label_sweep"):
        if key in pictures:
            (out / f"{key}.png").write_bytes(pictures[key])
    classes = per_class(metrics)
    (out / "panels.json").write_text(json.dumps({
        "neighbours": {"sample_index": nb.sample_index.tolist(), "pixel_index": nb.pixel_index.tolist(),
                       "pixel_distance": nb.pixel_distance.tolist(), "feature_index": nb.feature_index.tolist(),
                       "feature_distance": nb.feature_distance.tolist(), "typical": nb.typical,
                       "near_copy": nb.near_copy},
        "interpolations": {"pairs": PAIRS, "steps": STEPS, "scale": max(1, 32 // tile)},
        "per_class": classes, "best_step": best_step}, indent=1))
    (out / "index.html").write_text(page(title, metrics, thresholds, pictures, nb, classes))
