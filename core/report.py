"""Evaluation reports: report.md (tables) and report.html (plotly figures, works offline)."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .evaluate import METRICS


def _fmt(v, pct=True):
    if v is None:
        return "—"
    return f"{100 * v:.1f}" if pct else f"{v:.2f}"


def _matrix_md(names, mat) -> list[str]:
    lines = ["| after enrolling ↓ / test set → | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for i, row in enumerate(mat):
        lines.append(f"| {names[i]} | " + " | ".join(_fmt(v) for v in row) + " |")
    return lines


def write_markdown(out_dir: Path, res: dict) -> None:
    names, f = res["tasks"], res["final"]
    lines = [f"# PatchCoreCL evaluation ({res['mode']} mode)", "",
             f"Backbone `{res['backbone']}`, total budget {res['budget']:,} patches, seed {res['seed']}, "
             f"domains in order: {', '.join(names)}.", "", "## Layouts detected", "",
             "| domain | layout | train | valid normals | test normal | test anomalous | pixel masks |",
             "|---|---|---|---|---|---|---|"]
    for n, s in res["layouts"].items():
        lines.append(f"| {n} | {s['layout']} | {s['train']} | {s['valid_normal']} | {s['test_normal']} | "
                     f"{s['test_anomalous']} | {'yes' if s['pixel_masks'] else 'no'} |")
    lines += ["", "## Final step (mean over domains, %)", "", "| metric | PatchCoreCL | joint | task-specific |",
              "|---|---|---|---|"]
    base = res.get("baselines", {})
    for m in METRICS:
        lines.append(f"| {m} | {_fmt(f[m])} | {_fmt(base.get('joint', {}).get(m))} | "
                     f"{_fmt(base.get('task_specific', {}).get(m))} |")
    lines += ["", "| continual summary | value |", "|---|---|",
              f"| forgetting (image AUROC points, mean over T−1 earlier tasks) | {_fmt(f['forgetting_image_auroc'], False)} |",
              f"| backward transfer (image AUROC points) | {_fmt(f['bwt_image_auroc'], False)} |",
              f"| routing accuracy (final step) | {_fmt(f['routing_accuracy'])} |",
              f"| unknown-domain AUROC (mean over steps) | {_fmt(f['unknown_domain_auroc'])} |",
              f"| sensitivity at the calibrated thresholds | {_fmt(f['sensitivity_at_threshold'])} |",
              f"| specificity at the calibrated thresholds | {_fmt(f['specificity_at_threshold'])} |",
              f"| enrolled scans answered 'unknown domain' | {_fmt(f['unknown_domain_rate_on_enrolled'])} |",
              "", "## Accuracy matrices (%)", ""]
    for m in METRICS:
        lines += [f"### {m}", ""] + _matrix_md(names, res["matrix"][m]) + [""]
    t = res["timing"]
    lines += ["## Timing", "", f"- enrolment per step (s): {', '.join(f'{x:.1f}' for x in t['enroll_seconds_per_step'])}",
              f"- scoring, full pipeline: p50 {t['score_ms_p50']:.0f} ms, p95 {t['score_ms_p95']:.0f} ms per scan",
              f"- total: {t['total_seconds']:.0f} s; peak RSS {res['peak_rss_mb']:.0f} MB", ""]
    if res.get("differences_from_published"):
        lines += ["## Differences from the published PatchCoreCL code", ""]
        lines += [f"- {d}" for d in res["differences_from_published"]] + [""]
    if res.get("skipped_files"):
        lines += [f"## Skipped files ({len(res['skipped_files'])})", ""]
        lines += [f"- {s['split']}: {s['reason']}" for s in res["skipped_files"][:50]] + [""]
    (out_dir / "report.md").write_text("\n".join(lines))


def write_html(out_dir: Path, res: dict, per_domain: dict, examples: list[dict]) -> None:
    import plotly.graph_objects as go

    names = res["tasks"]
    figs = []
    z = [[None if v is None else 100 * v for v in row] for row in res["matrix"]["image_auroc"]]
    figs.append(go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Viridis", zmin=50, zmax=100,
                                     text=[[_fmt(v) for v in row] for row in res["matrix"]["image_auroc"]],
                                     texttemplate="%{text}")).update_layout(
        title="Image AUROC: rows = after enrolling, columns = test set", yaxis_autorange="reversed"))
    roc = go.Figure()
    for n in names:
        normal, bad = np.asarray(per_domain[n]["normal_scores"]), np.asarray(per_domain[n]["anomalous_scores"])
        thr = np.unique(np.r_[normal, bad])[::-1]
        tpr = [(bad >= t).mean() for t in thr]
        fpr = [(normal >= t).mean() for t in thr]
        roc.add_trace(go.Scatter(x=[0] + fpr, y=[0] + tpr, mode="lines", name=n))
    figs.append(roc.update_layout(title="ROC per domain (final step)", xaxis_title="false-positive rate",
                                  yaxis_title="true-positive rate"))
    for n in names:
        d = per_domain[n]
        h = go.Figure([go.Histogram(x=d["normal_scores"], name="normal", opacity=0.6),
                       go.Histogram(x=d["anomalous_scores"], name="anomalous", opacity=0.6)])
        h.add_vline(x=d["threshold"], line_dash="dash", annotation_text="threshold (from validation normals)")
        figs.append(h.update_layout(barmode="overlay", title=f"{n}: image scores, final step",
                                    xaxis_title="raw image score"))
    parts = [f.to_html(full_html=False, include_plotlyjs=(k == 0)) for k, f in enumerate(figs)]
    md = (out_dir / "report.md").read_text() if (out_dir / "report.md").exists() else ""
    imgs = "".join(f'<figure style="display:inline-block;margin:4px"><img src="data:image/png;base64,{e["png"]}" '
                   f'width="224"><figcaption>{html.escape(e["domain"])}: {html.escape(str(e["decision"]))}'
                   f"</figcaption></figure>" for e in examples)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>PatchCoreCL evaluation</title></head><body "
           f"style='font-family:sans-serif;max-width:1100px;margin:auto'><h1>PatchCoreCL evaluation</h1>"
           f"<pre style='white-space:pre-wrap'>{html.escape(md)}</pre>{''.join(parts)}"
           f"<h2>Example heatmaps (anomalous test scans)</h2>{imgs}</body></html>")
    (out_dir / "report.html").write_text(doc)


def write_reports(out_dir: Path, res: dict, per_domain: dict, examples: list[dict]) -> None:
    write_markdown(out_dir, res)
    write_html(out_dir, res, per_domain, examples)
