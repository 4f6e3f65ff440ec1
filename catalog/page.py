"""The static catalog pages: ``index.html`` at the root (every dataset, its latest version's
headline metrics with their gate status) and ``NAME/index.html`` (every version: preview grid,
metrics against thresholds, lineage, the ``ganvirt pull`` command). Plain HTML with relative
links: it works opened from a folder or served from a bucket's static hosting. Pure functions of
the manifests: ``catalog.store`` reads them and writes the pages."""

from __future__ import annotations

import html

HEADLINE = ("fid_like", "fid_like_floor", "fid_like_ratio", "tstr_accuracy", "trtr_accuracy", "precision", "recall",
            "dcr_share", "mia_auc")
STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}.pass{color:#070}.fail{color:#b00}"
         "code{background:#f3f3f3;padding:.1rem .3rem}img{image-rendering:pixelated;max-width:420px}")


def _e(x) -> str:
    return html.escape(str(x))


def _doc(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def _metric_cells(m: dict) -> str:
    met, thr = m.get("metrics", {}), m.get("thresholds", {})
    cells = []
    for k in HEADLINE:
        if k not in met:
            cells.append("<td>–</td>")
            continue
        verdict = thr.get(k, {})
        cls = "" if "passed" not in verdict else (" class='pass'" if verdict["passed"] else " class='fail'")
        cells.append(f"<td{cls}>{met[k]:.4g}</td>")
    return "".join(cells)


def privacy_text(m: dict) -> str:
    """What the manifest says about formal privacy: ε and δ with what they cover, or none."""
    p = m.get("privacy")
    if p is None:
        return "differential privacy: not recorded (published before ε was recorded)"
    if p.get("epsilon") is None:
        return "differential privacy: none (ε null: no formal guarantee)"
    return (f"differential privacy: ε = {p['epsilon']:.3g}, δ = {p['delta']:.2g} over {p.get('covers', 'the train split')} "
            f"({p.get('accountant', '?')} accountant, σ {p.get('noise_multiplier') or 0:.3g}, q {p.get('sample_rate') or 0:.3g}, "
            f"{p.get('steps', '?')} steps); {p.get('outside', '')}")


def near_copies_text(m: dict) -> str:
    """What the manifest says about near copies of real images."""
    nc = m.get("near_copies")
    if not nc:
        return "near copies: not filtered (published before the filter)"
    return (f"near copies replaced at publication: {nc['replaced']} (samples nearer than {nc['threshold']:.3g} to a "
            "real train or holdout image, each replaced by the next unused seed)")


def _pull(name: str, version: int) -> str:
    return f"ganvirt pull {name}@{version} --to ./{name}-v{version}"


def dataset_page(name: str, manifests: dict[int, dict]) -> str:
    """The page of dataset ``name``: ``manifests`` maps each version to its manifest."""
    rows = []
    for v in sorted(manifests, reverse=True):
        m = manifests[v]
        gen, src = m.get("generator", {}), m.get("source", {})
        verdicts = m.get("thresholds", {})
        gate = ("passed" if verdicts and all(t.get("passed") for t in verdicts.values()) else
                "failed" if verdicts else "–")
        failing = [k for k, t in verdicts.items() if not t.get("passed")]
        preview = (f"<img src='{v}/preview.png' alt='samples of version {v}' class='preview' "
                   "onload=\"this.dataset.loaded='yes'\">") if "preview.png" in m["files"] else ""
        kind = "virtual (manifest only; materialised on pull)" if m.get("virtual") else m.get("format", "npz")
        rows.append(
            f"<h2 id='v{v}'>{_e(name)}@{v}</h2><p>{_e(m.get('created', ''))} · {_e(m.get('shape', ['?'])[0])} images "
            f"· {_e(kind)} · gates <b class='{'pass' if gate == 'passed' else 'fail'}'>{gate}</b>"
            f"{(' (' + _e(', '.join(failing)) + ')') if failing else ''}</p>{preview}"
            f"<table><tr>{''.join(f'<th>{k}</th>' for k in HEADLINE)}</tr><tr>{_metric_cells(m)}</tr></table>"
            f"<p>generator <code>{_e(gen.get('uri', '?'))}</code> (run {_e(gen.get('run_id', '?'))}) · "
            f"source <code>{_e(src.get('uri', '?'))}</code> sha256 {_e(str(src.get('fingerprint', '?'))[:16])}… · "
            f"seed {_e(m.get('seed', '?'))} · Prefect flow run {_e(m.get('prefect_flow_run_id') or '–')}</p>"
            f"<p>{_e(near_copies_text(m))}</p><p class='privacy'>{_e(privacy_text(m))}</p>"
            f"<p><code>{_e(_pull(name, v))}</code></p>")
    body = (f"<p><a href='../index.html'>← all datasets</a></p><h1>{_e(name)}</h1>" + "".join(rows))
    return _doc(f"{name} · ganvirt catalog", body)


def root_page(datasets: dict[str, tuple[list[int], dict]]) -> str:
    """The root page: ``datasets`` maps each name to (its versions, the latest's manifest)."""
    rows = []
    for name, (vs, m) in sorted(datasets.items()):
        rows.append(f"<tr><td><a href='{_e(name)}/index.html'>{_e(name)}</a></td><td>{len(vs)}</td>"
                    f"<td>{vs[-1]}</td><td>{_e(m.get('shape', ['?'])[0])}</td>{_metric_cells(m)}"
                    f"<td><code>{_e(_pull(name, vs[-1]))}</code></td></tr>")
    head = "".join(f"<th>{k}</th>" for k in ("dataset", "versions", "latest", "images", *HEADLINE, "pull"))
    body = ("<h1>ganvirt catalog</h1><p>Synthetic stand-ins for real datasets. Green metrics passed their "
            "gate, red failed. Pull one with the command in its row.</p>"
            f"<table><tr>{head}</tr>{''.join(rows) or '<tr><td>no datasets yet</td></tr>'}</table>")
    return _doc("ganvirt catalog", body)
