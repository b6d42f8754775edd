"""The report's sample sections: the familiarity galleries and the duplicate sets (exact copies
first, then near duplicates), as cards with thumbnails and a sortable, searchable table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._html import esc, table

if TYPE_CHECKING:
    from ._report_page import DataSection

__all__ = [
    "DuplicateSet",
    "ranked_groups",
    "familiarity_section",
    "duplicates_section",
    "MAX_SET_ROWS",
]


def _card(data: DataSection, idx: int) -> str:
    uri = data.thumbnails.get(idx)
    img = f'<img alt="" src="{esc(uri)}">' if uri else '<div class="noimg">no thumbnail</div>'
    fam = (
        f'<div class="fam">familiarity {float(data.familiarity[idx]):.4g}</div>'
        if data.familiarity is not None
        else ""
    )
    return (
        # the whole label and id in the tooltip: the card shows three lines of each at most
        f'<div class="card" data-index="{idx}" title="{esc(data.labels[idx])}: '
        f'{esc(data.ids[idx])}">{img}'
        f'<div class="lbl">{esc(data.labels[idx])}</div>'
        f'<div class="id">{esc(data.ids[idx])}</div>{fam}</div>'
    )


def familiarity_section(data: DataSection) -> str:
    """The familiarity section: the least and most familiar samples."""
    out = '<section id="familiarity"><h2>Familiarity</h2>'
    if data.familiarity is None:
        return out + '<p class="note">Familiarity was not computed.</p></section>'
    order = np.argsort(np.asarray(data.familiarity, dtype=float), kind="stable")
    k = min(data.gallery_size, len(order))
    least, most = order[:k], order[::-1][:k]
    out += (
        '<p class="note">A Gaussian mixture fitted on the responses scores how typical each '
        "sample is (log-likelihood; higher = more familiar). The least familiar samples are "
        "outliers, rare cases or label errors worth a look.</p>"
        '<h3>Least familiar</h3><div class="gallery" id="least-familiar">'
        + "".join(_card(data, int(i)) for i in least)
        + '</div><h3>Most familiar</h3><div class="gallery" id="most-familiar">'
        + "".join(_card(data, int(i)) for i in most)
        + "</div></section>"
    )
    return out


@dataclass(frozen=True)
class DuplicateSet:
    """One duplicate set as the report shows it: members, and how many are exact copies."""

    members: Sequence[int]
    copies: int | None  # members identical to another member; None when unknown
    #: all members copies of one sample; None: known only for two members that are copies
    exact: bool | None = None

    @property
    def kind(self) -> str:
        """``exact`` (all members identical), ``near`` or ``unknown``."""
        if self.copies is None:
            return "unknown"
        if self.exact is not None:
            return "exact" if self.exact else "near"
        # every member has a twin: all identical for two members, not so for more ({0=1, 2=3})
        return "exact" if self.copies == len(self.members) == 2 else "near"

    @property
    def label(self) -> str:
        """The kind, with the exact copies inside a near set: ``near, 2 exact copies``."""
        if self.kind == "near" and self.copies:
            return f"near, {self.copies} exact copies"
        return self.kind


def ranked_groups(data: DataSection) -> list[DuplicateSet]:
    """The duplicate sets: exact sets first, then near sets holding exact copies, then the other
    near sets; by size (largest first), then by first member, within each."""
    groups = list(data.duplicate_groups or ())
    copies = list(data.duplicate_copies) if data.duplicate_copies is not None else None
    exact = list(data.duplicate_exact) if data.duplicate_exact is not None else None
    sets = [
        DuplicateSet(
            g,
            None if copies is None else int(copies[k]),
            None if exact is None else bool(exact[k]),
        )
        for k, g in enumerate(groups)
    ]
    rank = {"exact": 0, "near": 1, "unknown": 1}
    return sorted(
        sets,
        key=lambda d: (rank[d.kind], not d.copies, -len(d.members), min(d.members)),
    )


#: Duplicate sets listed in the table of the duplicates section (exact sets first).
MAX_SET_ROWS = 2000


def _kind_tag(d: DuplicateSet) -> str:
    return f'<span class="kind {d.kind}">{esc(d.label)}</span>'


def _sets_table(data: DataSection, ranked: Sequence[DuplicateSet]) -> str:
    rows, keys = [], []
    for k, d in enumerate(ranked[:MAX_SET_ROWS], 1):
        members = [int(i) for i in d.members]
        labels = sorted({str(data.labels[i]) for i in members})
        keys.append([str(data.ids[i]) for i in members])
        rows.append(
            [
                str(k),
                _kind_tag(d) if d.kind != "unknown" else "–",
                str(len(members)),
                esc(", ".join(labels)),
                esc(", ".join(str(data.ids[i]) for i in members)),
            ]
        )
    note = (
        f'<p class="note">The table lists the first {MAX_SET_ROWS} of {len(ranked)} sets.</p>'
        if len(ranked) > MAX_SET_ROWS
        else ""
    )
    return (
        "<h3>All sets</h3>"
        + table(
            ["set", "kind", "samples", "labels", "sample ids"],
            rows,
            cls="dup-sets",
            numeric_from=2,
            text_columns=(3, 4),
            filter_on="sample id",
            filter_columns=(4,),
            row_keys=keys,
        )
        + note
    )


def duplicates_section(data: DataSection) -> str:
    """The duplicates section: exact sets first, then near duplicates, and a table of all."""
    out = '<section id="duplicates"><h2>Duplicates</h2>'
    groups = data.duplicate_groups
    if groups is None:
        return out + '<p class="note">Duplicates were not searched for.</p></section>'
    if not groups:
        return out + '<p class="note">No duplicate sets were found.</p></section>'
    ranked = ranked_groups(data)
    total = sum(len(g) for g in groups)
    n_exact = sum(1 for d in ranked if d.kind == "exact")
    out += f'<p class="note">{len(groups)} sets, {total} samples in them'
    if data.duplicate_copies is not None:
        out += (
            f": {n_exact} {'set' if n_exact == 1 else 'sets'} of exact copies (identical "
            f"responses or inputs), listed first, then {len(groups) - n_exact} of near "
            f"duplicates (those holding exact copies first)"
        )
    if len(groups) > data.max_groups:
        out += f"; the first {data.max_groups} are shown"
    out += ".</p>"
    out += '<div class="groups">'
    for d in ranked[: data.max_groups]:
        members = list(d.members)[: data.group_size]
        more = len(d.members) - len(members)
        cards = "".join(_card(data, int(i)) for i in members)
        extra = f'<p class="note">and {more} more</p>' if more > 0 else ""
        tag = _kind_tag(d) + " " if d.kind != "unknown" else ""
        out += (
            f'<div class="group" data-kind="{d.kind}"><div class="note">{tag}'
            f"{len(d.members)} samples</div>"
            f'<div class="gallery">{cards}</div>{extra}</div>'
        )
    return out + "</div>" + _sets_table(data, ranked) + "</section>"
