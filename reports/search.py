"""The result of ``sleuth search`` as one self-contained HTML page: each ranked item with its crop.

Crops are re-read from the source videos when the page is written (a moved video shows no crop,
and the page still renders). Scores, the cloze and each candidate's completion are shown so an
analyst sees why an item moved up or down.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sleuth.agents.cloze import RankedItem, SearchResult
from sleuth.errors import SleuthError
from sleuth.reports.files import atomic_write_text
from sleuth.reports.html import _e, mmss, page
from sleuth.reports.thumbnails import thumbnail

_STYLE = (".hits{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}"
          ".hit{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px}"
          ".hit img{width:100%;height:180px;object-fit:contain;background:#111;border-radius:4px}"
          ".hit .n{font-weight:600}.match{color:var(--ok)}.miss{color:var(--bad)}.small{font-size:13px;"
          "color:var(--muted)}")


def write_search_html(result: SearchResult, path: str | os.PathLike[str],
                      crop: Callable[[RankedItem], np.ndarray] | None = None) -> Path:
    """Write the page; ``crop`` gives an item's image (default: re-read from its video)."""
    return atomic_write_text(path, render_search_html(result, crop))


def render_search_html(result: SearchResult, crop: Callable[[RankedItem], np.ndarray] | None = None) -> str:
    if crop is None:
        from sleuth.memory.gallery import item_image

        def crop(entry: RankedItem) -> np.ndarray:
            return item_image(entry.item)

    cloze = ""
    if result.cloze is not None:
        slots = ", ".join(f"{_e(slot.name)} = {_e(slot.answer)}" for slot in result.cloze.slots) or "none"
        cloze = (f"<p>Cloze ({_e(result.cloze.source)}): <code>{_e(result.cloze.text)}</code>; slots: {slots}</p>")
    cards = "\n".join(_card(position, entry, crop) for position, entry in enumerate(result.results, 1))
    body = (f"<header><h1>Search: {_e(result.query)}</h1><p class=\"small\">Gallery {_e(result.gallery)}; "
            f"retriever {_e(result.retriever)}; {result.llm_calls} LLM calls; {result.seconds:.1f} s.</p>{cloze}"
            f"</header>\n<section><h2>Ranked results</h2><div class=\"hits\">{cards or '<p>No results.</p>'}</div>"
            "</section>")
    return page(f"Sleuth search: {result.query}", body, style=_STYLE)


def _card(position: int, entry: RankedItem, crop: Callable[[RankedItem], np.ndarray]) -> str:
    try:
        image = f'<img src="data:image/jpeg;base64,{thumbnail(crop(entry), 320)}" alt="result {position}">'
    except (SleuthError, OSError, ValueError) as exc:
        image = f'<p class="small">(no image: {_e(str(exc)[:120])})</p>'
    item = entry.item
    rank = f"re-rank n={entry.rank}" if entry.rank is not None else "not re-ranked"
    lines = [f'<p class="n">#{position} &middot; S {entry.score:.3f} (S1 {entry.s1:.3f}, {rank})</p>',
             f'<p class="small">{_e(Path(item.video).name)} frame {item.frame} at {mmss(item.time_s)} &middot; '
             f"{_e(item.kind)}{' box ' + _e(list(item.box)) if item.box else ''}</p>",
             f'<p class="small">{_e(item.caption)}</p>']
    if entry.completion is not None and entry.completion.fills:
        fills = ", ".join(
            f'<span class="{"match" if entry.completion.matches.get(name) else "miss"}">{_e(name)}={_e(word)}</span>'
            for name, word in entry.completion.fills.items())
        lines.append(f'<p class="small">completion ({_e(entry.completion.source)}): {fills}</p>')
    return f'<div class="hit">{image}{"".join(lines)}</div>'
