"""A self-contained HTML report per run: summary, per-stage timings, errors, saved images."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from PIL import Image

from vistudio.pipelines.audit import outcome

MAX_IMAGES = 60
MAX_SIDE = 1024  # larger outputs are scaled down to this before they are embedded
MAX_EMBEDDED_BYTES = 24 << 20  # the report stays a file a browser opens at once
READABLE_SIDE = 160  # small images are shown scaled up (pixelated) until their shorter side is this

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Run {{ a.run_id }} · {{ a.pipeline.name }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7fb;color:#1f2430}
main{max-width:1100px;margin:0 auto;padding:24px}@media (max-width:600px){main{padding:12px}}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
.muted{color:#6b7280}.card{background:#fff;border:1px solid #e3e6ee;border-radius:10px;padding:16px;margin-top:12px;overflow-x:auto}
.kpis{display:flex;gap:12px;flex-wrap:wrap}.kpi{background:#fff;border:1px solid #e3e6ee;border-radius:10px;padding:10px 14px;min-width:110px}
.kpi b{display:block;font-size:20px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eef0f5;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#6b7280}td.num,th.num{text-align:right}
.bar{height:8px;background:#4f46e5;border-radius:4px;min-width:1px}
.bad{color:#b91c1c}.ok{color:#047857}.tag{display:inline-block;padding:1px 8px;border-radius:10px;background:#eef2ff;color:#3730a3;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid #e3e6ee;border-radius:8px;overflow:hidden;max-width:100%}
figure img{display:block;max-width:100%;height:auto;background:#f0f2f7}
figure img.px{image-rendering:pixelated}
figcaption{padding:6px 8px;font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.msg{max-width:420px;min-width:16em;word-break:break-word}
.status{display:inline-block;margin:4px 0 12px;padding:2px 10px;border-radius:10px;font-weight:600;font-size:13px}
.st-succeeded{background:#dcfce7;color:#15803d}.st-partial{background:#ffedd5;color:#c2410c}
.st-failed{background:#fee2e2;color:#b91c1c}.st-cancelled{background:#fef3c7;color:#92400e}
</style></head><body><main>
<h1>{{ a.pipeline.name }} <span class="muted">v{{ a.pipeline.version }} · {{ a.pipeline.version_hash }}</span></h1>
<p class="muted">Run <b>{{ a.run_id }}</b> · {{ a.timestamp }} · mode <b>{{ a.mode }}</b>{% if a.tag %} · <span class="tag">{{ a.tag }}</span>{% endif %}{% if a.dry_run %} · dry run{% endif %}</p>
{% if a.status %}<p class="status st-{{ a.status }}">{{ a.status }}</p> <span class="muted">{{ outcome }}</span>{% endif %}
<div class="kpis">
<div class="kpi"><span class="muted">{{ "item" if a["items"] == 1 else "items" }}</span><b>{{ a["items"] }}</b></div>
<div class="kpi"><span class="muted">failed</span><b class="{{ 'bad' if a.failed else 'ok' }}">{{ a.failed }}</b></div>
{% if a.mode == "validation" %}<div class="kpi"><span class="muted">{{ "mistake" if a.mistakes == 1 else "mistakes" }}</span><b class="{{ 'bad' if a.mistakes else 'ok' }}">{{ a.mistakes }}</b></div>{% endif %}
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
<h2>Saved images{% if left_out %} (first {{ images|length }}){% endif %}</h2>
{% if images %}<div class="grid">{% for im in images %}<figure style="width:{{ im.shown }}px"><img alt="{{ im.name }}" src="data:{{ im.mime }};base64,{{ im.data }}" width="{{ im.width }}" height="{{ im.height }}" style="width:{{ im.shown }}px"{% if im.shown > im.width %} class="px"{% endif %}><figcaption title="{{ im.name }}">{{ im.name }}</figcaption></figure>{% endfor %}</div>
{% if left_out %}<p class="muted">{{ left_out }} more not embedded, to keep this report small: they are in the run's outputs folder.</p>{% endif %}
{% else %}<p class="muted">This run saved no images.</p>{% endif %}
</main></body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def readable_width(width: int, height: int) -> int:
    """The width to show an image at: its own, or a whole multiple of it for a small image, so
    its shorter side reaches ``READABLE_SIDE`` (shown pixelated; CSS caps it at the column)."""
    short = min(width, height)
    if short <= 0 or short >= READABLE_SIDE:
        return max(width, 0)
    return width * -(-READABLE_SIDE // short)


def _embed(path: Path) -> dict[str, Any] | None:
    """The saved file as it is (base64), scaled down only past ``MAX_SIDE``; None if unreadable."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if max(width, height) <= MAX_SIDE and im.format in ("PNG", "JPEG"):
                data, mime = path.read_bytes(), f"image/{im.format.lower()}"
            else:
                im.thumbnail((MAX_SIDE, MAX_SIDE))
                width, height = im.size
                buf = io.BytesIO()
                im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB").save(buf, "PNG")
                data, mime = buf.getvalue(), "image/png"
    except Exception:  # a damaged or vanished output: the report lists what it can
        return None
    return {
        "name": path.name,
        "mime": mime,
        "data": base64.b64encode(data).decode(),
        "width": width,
        "height": height,
        "shown": readable_width(width, height),
    }


def render_report(audit: dict[str, Any], *, home: Path, max_rows: int = 500) -> bytes:
    images: list[dict[str, Any]] = []
    embedded, left_out = 0, 0
    for item in audit["per_item"]:
        for rel in item["outputs"]:
            if not rel.endswith((".png", ".jpg")) or rel.startswith("blob:"):
                continue
            if len(images) >= MAX_IMAGES or embedded >= MAX_EMBEDDED_BYTES:
                left_out += 1
                continue
            im = _embed(home / rel)
            if im:
                images.append(im)
                embedded += len(im["data"])
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
        a=audit,
        outcome=outcome(audit),
        images=images,
        left_out=left_out,
        errors=errors,
        max_rows=max_rows,
        max_images=MAX_IMAGES,
        max_ms=max_ms,
    )
    return html.encode()
