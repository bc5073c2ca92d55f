"""Competition ranking (并列), the one way every table of the field ranks: highest first, equal values share a
rank and the next rank is skipped (1, 1, 3); a unit with nothing to rank (None) gets no rank.
Standard library only, like the other rule modules."""

from __future__ import annotations

from collections.abc import Iterable


def competition_ranks(values: Iterable[float | None]) -> list[int | None]:
    values = list(values)
    first: dict[float, int] = {}
    for position, value in enumerate(sorted((v for v in values if v is not None), reverse=True), start=1):
        first.setdefault(value, position)
    return [None if v is None else first[v] for v in values]
