"""Templates benchmark: the CPU cost per message of sending with a realistic stored template.

The template is a transactional receipt of about 10 KB of HTML once rendered: a ``<style>`` block (11 rules and an
``@media`` query), a greeting, a table of 55 order lines rendered by a loop, buttons and footer links; no text part,
so one is derived from the HTML. Per message, each stage on its own clock, in one process, one message at a time:

- **render**: the three parts through the bounded sandbox (``StoredTemplates.render`` minus the two stages below:
  Jinja2 with the loop/size/time checks, compiled template from the cache). The HTML part comes from the template
  with its CSS inlined once per version (``templates.inline_once``) when that is equivalent, as it is here;
- **inline CSS**: ``css-inline`` on the rendered HTML, only when the template could not be inlined once (the
  last column: the same template with inlining once turned off, for comparison);
- **text part**: ``text_once.assemble`` of what the render noted (``templates.text_once``), or ``html_to_text`` on
  the email-ready HTML in the last column;
- **Message**: ``message_from_template`` (validation of the fields and bodies);
- **MIME**: ``mailsc.render`` to the bytes stored in the outbox.

Every message gets other variables (name, order number, lines). The first render of a version compiles it (shown
apart); every later one uses the cache. ``python -m bench.templates`` runs it alone and writes the ``## Templates``
section of docs/benchmarks.md (``BENCH_QUICK=1``: fewer messages, prints only).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench import Section, Settings, machine_line, markdown_table, package_version, wait_until_quiet, write_section
from mailsc.mime import render as render_mime
from mailsc.templates import RenderedTemplate, StoredTemplates, emailhtml, message_from_template, text_once
from mailsc.templates.render import render_parts

TARGET_US = 300.0
LINES = 55  # order lines: about 10 KB of rendered HTML
STYLE = """<style>
body { margin: 0; padding: 0; background: #f4f4f7; font-family: Helvetica, Arial, sans-serif; color: #333333; }
.wrapper { width: 100%; background: #f4f4f7; padding: 24px 0; }
.container { width: 600px; margin: 0 auto; background: #ffffff; border-radius: 6px; }
.header { padding: 24px; background: #22303c; color: #ffffff; font-size: 20px; }
.content { padding: 24px; line-height: 1.5; }
h1 { font-size: 22px; margin: 0 0 16px; color: #111111; }
p { margin: 0 0 12px; font-size: 15px; }
.items td { padding: 6px 8px; border-bottom: 1px solid #eeeeee; font-size: 14px; }
.items .price { text-align: right; white-space: nowrap; }
.button { display: inline-block; background: #1a82e2; color: #ffffff; padding: 12px 20px; text-decoration: none; }
.footer { padding: 16px 24px; font-size: 12px; color: #888888; }
@media only screen and (max-width: 620px) { .container { width: 100% !important; } .content { padding: 12px; } }
</style>"""
HTML = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>Your receipt</title>"""
    + STYLE
    + """</head>
<body><div class="wrapper"><div class="container">
<div class="header">Example Shop</div>
<div class="content">
<h1>Thanks for your order, {{ name }}!</h1>
<p>We have received your order <strong>#{{ order }}</strong> placed on {{ date }}. It will ship within two
business days; we will send you the tracking number as soon as the parcel leaves our warehouse.</p>
<table class="items" width="100%" cellpadding="0" cellspacing="0">
<tr><th align="left">Item</th><th align="right">Price</th></tr>
{% for line in lines %}<tr><td>{{ line.quantity }} x {{ line.title }} <br><small>SKU {{ line.sku }}</small></td>
<td class="price">{{ "%.2f"|format(line.price) }} EUR</td></tr>
{% endfor %}<tr><td><strong>Total</strong></td>
<td class="price"><strong>{{ "%.2f"|format(total) }} EUR</strong></td></tr>
</table>
<p><a class="button" href="https://shop.example.com/orders/{{ order }}?utm_source=receipt">View your order</a></p>
<p>Questions? Reply to this email or visit <a href="https://shop.example.com/help">our help centre</a>.</p>
</div>
<div class="footer">Example Shop, 1 Market Street, Springfield.
<a href="https://shop.example.com/account/emails?u={{ user_id }}">Email preferences</a> &middot;
<a href="https://shop.example.com/unsubscribe?u={{ user_id }}">Unsubscribe</a></div>
</div></div></body></html>
"""
)


@dataclass(frozen=True)
class _Source:
    name: str
    version: int
    subject: str
    html: str | None
    text: str | None


def variables(i: int) -> dict[str, Any]:
    lines = [
        {
            "quantity": 1 + (i + n) % 3,
            "title": f"Product number {n} in colour {('red', 'blue')[n % 2]}",
            "sku": f"SKU-{i:05d}-{n:03d}",
            "price": 3.5 + n,
        }
        for n in range(LINES)
    ]
    return {
        "name": f"Customer {i}",
        "order": 100000 + i,
        "date": "24 November 2026",
        "lines": lines,
        "total": sum((3.5 + n) * (1 + (i + n) % 3) for n in range(LINES)),
        "user_id": f"u{i}",
    }


STAGES = ("render", "inline CSS", "text part", "Message", "MIME", "total")
FIELDS = {"to": "ada@example.org", "from": "shop@example.com"}


def measure(count: int, *, once: bool = True) -> tuple[dict[str, list[float]], float, int, int]:
    """Per-stage microseconds for ``count`` messages; the first (compiling) render's time; sizes. ``once=False``
    drops the template inlined once, so every message is inlined on its own."""
    templates = StoredTemplates()
    source = _Source("receipt", 1, "Your receipt for order #{{ order }}", HTML, None)
    clock = time.perf_counter_ns
    start = clock()
    templates.render(source, variables(0))
    compile_us = (clock() - start) / 1000
    compiled = templates.compiled(source)
    if once and not compiled.inlined:
        raise RuntimeError(f"the receipt template was not inlined once: {compiled.not_inlined}")
    if once and not compiled.inlined["html"].derives_text:
        raise RuntimeError(f"the receipt's text part is not noted while rendering: {compiled.inlined['html'].not_text}")
    if not once:
        compiled.inlined.clear()
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    html_size = mime_size = 0
    for i in range(count):
        values = variables(i)
        # The stages of StoredTemplates.render (same calls, same order of work), each on its own clock.
        t0 = clock()
        result = render_parts(compiled, values, templates.limits)
        parts = result.parts
        t1 = clock()
        html = parts["html"] if result.inlined else emailhtml.inline_css(parts["html"])
        t2 = clock()
        text = text_once.assemble(result.notes) if result.notes is not None else emailhtml.text_from_html(html)
        t3 = clock()
        message = message_from_template(FIELDS, RenderedTemplate(parts["subject"].strip(), html, text, "receipt", 1))
        t4 = clock()
        envelope = render_mime(message)
        t5 = clock()
        for stage, value in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
            stages[stage].append(value / 1000)
        html_size, mime_size = len(parts["html"]), len(envelope.data)
    return stages, compile_us, html_size, mime_size


def report(runs: dict[str, tuple[dict[str, list[float]], float, int, int]], settings: Settings) -> str:
    """``runs``: "once" and "per message", each as ``measure`` returns it."""
    stages, compile_us, html_size, mime_size = runs["once"]
    other = runs["per message"][0]
    count = len(stages["total"])
    total = statistics.median(stages["total"])
    rows = [
        [
            stage,
            f"{statistics.median(values):,.0f}",
            f"{sorted(values)[int(len(values) * 0.95)]:,.0f}",
            f"{100 * statistics.median(values) / total:.0f}%",
            f"{statistics.median(other[stage]):,.0f}",
        ]
        for stage, values in stages.items()
    ]
    table = markdown_table(
        ["stage", "median µs", "p95 µs", "share of median total", "inlined per message: median µs"],
        rows,
        [False, True, True, True, True],
    )
    verdict = "**met**" if total <= TARGET_US else "**not met**"
    return "\n".join(
        [
            machine_line(settings)
            + f" jinja2 {package_version('jinja2')}, css-inline {package_version('css-inline')}.",
            "",
            f"- Template: a stored receipt, {len(HTML):,} characters of source, {html_size:,} characters of HTML once "
            f"rendered ({LINES} order lines), no text part; {mime_size:,}-byte MIME message. {count:,} messages, each "
            "with its own variables; one process, one message at a time.",
            f"- First render of the version (compiling it into the cache, CSS inlined once): {compile_us:,.0f} µs; "
            "every later one uses the compiled template.",
            "- Last column: the same messages with the CSS inlined into each rendered message instead (what a "
            "template that cannot be inlined once costs), measured in alternating rounds with the others.",
            "",
            table,
            "",
            f"Target: render + inline + text + MIME per message <= {TARGET_US:.0f} µs median: "
            f"{total:,.0f} µs, {verdict} ({statistics.median(other['total']) / total:.2f}x faster than inlining "
            "each message).",
        ]
    )


def run(settings: Settings) -> Section:
    count = 200 if settings.quick else 3000
    wait_until_quiet(settings.quiet_timeout)
    measure(50)  # warm up: imports, caches, the allocator
    rounds = 5
    runs: dict[str, tuple[dict[str, list[float]], float, int, int]] = {}
    for _ in range(rounds):  # alternating, so a drift in the machine's speed hits both alike
        for label, once in (("once", True), ("per message", False)):
            stages, compile_us, html_size, mime_size = measure(count // rounds, once=once)
            if label in runs:
                for stage, values in runs[label][0].items():
                    values.extend(stages[stage])
            else:
                runs[label] = (stages, compile_us, html_size, mime_size)
    return Section("Templates", report(runs, settings))


if __name__ == "__main__":
    section = run(Settings.from_env())
    print(f"## {section.title}\n\n{section.markdown}")
    if not Settings.from_env().quick:
        write_section(section)
