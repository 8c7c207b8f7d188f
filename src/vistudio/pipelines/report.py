"""A self-contained HTML report per run: summary, per-stage timings, errors, saved images."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from PIL import Image

MAX_IMAGES = 60
THUMB = 220

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Run {{ a.run_id }} · {{ a.pipeline.name }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7fb;color:#1f2430}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
.muted{color:#6b7280}.card{background:#fff;border:1px solid #e3e6ee;border-radius:10px;padding:16px;margin-top:12px}
.kpis{display:flex;gap:12px;flex-wrap:wrap}.kpi{background:#fff;border:1px solid #e3e6ee;border-radius:10px;padding:10px 14px;min-width:110px}
.kpi b{display:block;font-size:20px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eef0f5;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#6b7280}td.num,th.num{text-align:right}
.bar{height:8px;background:#4f46e5;border-radius:4px;min-width:1px}
.bad{color:#b91c1c}.ok{color:#047857}.tag{display:inline-block;padding:1px 8px;border-radius:10px;background:#eef2ff;color:#3730a3;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:10px}
figure{margin:0;background:#fff;border:1px solid #e3e6ee;border-radius:8px;overflow:hidden}
figure img{display:block;width:100%;height:180px;object-fit:contain;background:#f0f2f7}
figcaption{padding:6px 8px;font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.msg{max-width:420px;word-break:break-word}
</style></head><body><main>
<h1>{{ a.pipeline.name }} <span class="muted">v{{ a.pipeline.version }} · {{ a.pipeline.version_hash }}</span></h1>
<p class="muted">Run <b>{{ a.run_id }}</b> · {{ a.timestamp }} · mode <b>{{ a.mode }}</b>{% if a.tag %} · <span class="tag">{{ a.tag }}</span>{% endif %}{% if a.dry_run %} · dry run{% endif %}</p>
<div class="kpis">
<div class="kpi"><span class="muted">items</span><b>{{ a["items"] }}</b></div>
<div class="kpi"><span class="muted">failed</span><b class="{{ 'bad' if a.failed else 'ok' }}">{{ a.failed }}</b></div>
{% if a.mode == "validation" %}<div class="kpi"><span class="muted">mistakes</span><b class="{{ 'bad' if a.mistakes else 'ok' }}">{{ a.mistakes }}</b></div>{% endif %}
<div class="kpi"><span class="muted">duration</span><b>{{ "%.2f"|format(a.duration_ms / 1000) }} s</b></div>
<div class="kpi"><span class="muted">peak memory</span><b>{{ a.peak_memory_mb }} MB</b></div>
</div>
<h2>Stages</h2>
<div class="card"><table><thead><tr><th>stage</th><th>uses</th><th class="num">ok</th><th class="num">failed</th><th class="num">mean ms</th><th class="num">total ms</th><th style="width:30%"></th><th class="num">saved</th></tr></thead><tbody>
{% for s in a.stages %}<tr><td>{{ s.stage }}</td><td class="muted">{{ s.uses }}</td><td class="num">{{ s.ok }}</td><td class="num {{ 'bad' if s.failed }}">{{ s.failed }}</td>
<td class="num">{{ "%.2f"|format(s.mean_ms) }}</td><td class="num">{{ "%.1f"|format(s.duration_ms) }}</td>
<td><div class="bar" style="width:{{ (100 * s.duration_ms / max_ms) | round(1) }}%"></div></td><td class="num">{{ s.outputs_saved }}</td></tr>{% endfor %}
</tbody></table></div>
{% if errors %}<h2>Errors and mistakes ({{ errors|length }}{% if errors|length >= max_rows %}+{% endif %})</h2>
<div class="card"><table><thead><tr><th>item</th><th>stage</th><th>truth</th><th>prediction</th><th>message</th></tr></thead><tbody>
{% for e in errors %}<tr><td>{{ e.item }}</td><td>{{ e.stage }}</td><td>{{ e.truth or "" }}</td><td>{{ e.prediction or "" }}</td><td class="msg bad">{{ e.message or "" }}</td></tr>{% endfor %}
</tbody></table></div>{% endif %}
{% if a.mode == "validation" and a.errors.confusion %}<h2>Confusion of mistakes</h2><div class="card"><table><thead><tr><th>truth</th><th>predicted as</th></tr></thead><tbody>
{% for t, preds in a.errors.confusion.items() %}<tr><td>{{ t }}</td><td>{% for p, n in preds.items() %}{{ p }} × {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>{% endfor %}
</tbody></table></div>{% endif %}
<h2>Saved images{% if images|length >= max_images %} (first {{ max_images }}){% endif %}</h2>
{% if images %}<div class="grid">{% for im in images %}<figure><img alt="{{ im.name }}" src="data:image/png;base64,{{ im.data }}"><figcaption title="{{ im.name }}">{{ im.name }}</figcaption></figure>{% endfor %}</div>
{% else %}<p class="muted">This run saved no images.</p>{% endif %}
</main></body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def _thumb(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB").save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


def render_report(audit: dict[str, Any], *, home: Path, max_rows: int = 500) -> bytes:
    images: list[dict[str, str]] = []
    for item in audit["per_item"]:
        for rel in item["outputs"]:
            if len(images) >= MAX_IMAGES:
                break
            if rel.endswith((".png", ".jpg")) and not rel.startswith("blob:"):
                data = _thumb(home / rel)
                if data:
                    images.append({"name": Path(rel).name, "data": data})
    errors: list[dict[str, Any]] = []
    for item in audit["per_item"]:
        failed = next((s for s in item["stages"] if s["status"] == "failed"), None)
        if failed or (item["ground_truth"] is not None and item["prediction"] != item["ground_truth"]):
            errors.append(
                {
                    "item": item["item"],
                    "stage": failed["stage"] if failed else "(final)",
                    "truth": item["ground_truth"],
                    "prediction": item["prediction"],
                    "message": failed["error"] if failed else "prediction differs from ground truth",
                }
            )
        if len(errors) >= max_rows:
            break
    max_ms = max([s["duration_ms"] for s in audit["stages"]] + [1e-9])
    html = _ENV.from_string(TEMPLATE).render(
        a=audit, images=images, errors=errors, max_rows=max_rows, max_images=MAX_IMAGES, max_ms=max_ms
    )
    return html.encode()
