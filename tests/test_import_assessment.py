"""End to end: a month of history imported from the old platform's CSV files gives the assessment table that
the same files give when counted by hand here — straight from the CSV rows, with the rules of domain.md §4
written out again in this file (not through commandcenter.assessment.rules)."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest

from commandcenter.categories import install_default_categories
from commandcenter.db import db
from commandcenter.models import Category, Place
from commandcenter.workcalendar import is_workday

pytestmark = pytest.mark.postgres

MONTH_DIR = Path(__file__).parent / "fixtures" / "import" / "month"
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 30)
YES = "是"


def rows(name: str) -> list[dict]:
    with (MONTH_DIR / f"{name}.csv").open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def local_day(text: str) -> date:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").date()


def in_month(text: str) -> bool:
    return bool(text) and FIRST <= local_day(text) <= LAST


def half_up(x: float) -> float:
    from decimal import ROUND_HALF_UP, Decimal

    return float(Decimal(repr(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def by_hand(kinds: dict[str, str]) -> dict[str, dict]:
    """The ten indicators of every town, counted from the CSV files."""
    places = {p["code"]: p for p in rows("places")}

    def town_of(code: str) -> str | None:
        while code and places[code]["level"] != "town":
            code = places[code]["parent_code"]
            if not code:
                return None
        return code

    towns = [c for c, p in places.items() if p["level"] == "town"]
    accounts = {a["username"]: a for a in rows("accounts")}
    workers = {
        u: town_of(a["place_code"]) for u, a in accounts.items() if a["role"] == "gridworker" and a["active"] == YES
    }
    centers = {c["place_code"]: c["level"] for c in rows("centers")}
    counted = [c for c in rows("cases") if in_month(c["reported_at"]) and c["state"] not in ("duplicate", "rejected")]

    f = {
        t: {
            "population": int(places[t]["population"]),
            "reported": 0,
            "overdue": 0,
            "worker_reports": defaultdict(int),
            "worker_hazards": defaultdict(int),
            "center_reports": defaultdict(int),
            "escalations": 0,
            "village_center_disputes": 0,
        }
        for t in towns
    }
    for c in counted:
        town = town_of(c["grid_code"])
        f[town]["reported"] += 1
        f[town]["overdue"] += c["overdue"] == YES
        if c["reporter"] in workers:  # counted for the town of the gridworker who reported it
            f[workers[c["reporter"]]]["worker_reports"][c["reporter"]] += 1
            if kinds[c["category_code"]] == "hazard":
                f[workers[c["reporter"]]]["worker_hazards"][c["reporter"]] += 1
        center = c["reporter_center"]
        if center and centers.get(center) == "town":
            f[town_of(center)]["center_reports"][center] += 1
        if center and centers.get(center) == "village" and kinds[c["category_code"]] == "dispute":
            f[town_of(center)]["village_center_disputes"] += 1
        by = c["escalated_by_center"]
        if by and centers.get(by) == "town":
            f[town_of(by)]["escalations"] += 1

    # patrol: every workday of the month, at least 60 minutes started that (local) day
    minutes = defaultdict(float)
    for p in rows("patrols"):
        if p["ended_at"] and in_month(p["started_at"]):
            start = datetime.strptime(p["started_at"], "%Y-%m-%d %H:%M:%S")
            end = datetime.strptime(p["ended_at"], "%Y-%m-%d %H:%M:%S")
            minutes[(p["gridworker"], start.date())] += max(0.0, (end - start).total_seconds() / 60)
    workdays = [date(2026, 11, d) for d in range(1, 31) if is_workday(date(2026, 11, d))]

    persons = {
        p["code"]: town_of(p["grid_code"])
        for p in rows("persons")
        if p["active"] == YES and p["person_type"] in ("drug_user", "mental_risk")
    }
    visited = defaultdict(set)
    for v in rows("visits"):
        if v["person_code"] in persons and in_month(v["at"]):
            visited[persons[v["person_code"]]].add(v["person_code"])

    out = {}
    for t in towns:
        x = f[t]
        ws = [u for u, town in workers.items() if town == t]
        n = len(ws)
        town_centers = [c for c, level in centers.items() if level == "town" and town_of(c) == t]
        village_centers = [c for c, level in centers.items() if level == "village" and town_of(c) == t]
        assigned = sum(1 for town in persons.values() if town == t)
        patrol_ok = sum(1 for u in ws if all(minutes[(u, d)] >= 60 for d in workdays))
        r = (x["reported"] - x["overdue"]) / x["reported"]
        if len(town_centers) == 1:
            ind4 = 10 * min(1, x["center_reports"][town_centers[0]] / 20)
        else:
            ind4 = 10 * sum(x["center_reports"][c] >= 20 for c in town_centers) / len(town_centers)
        scores = {
            1: 20 * min(1, (x["reported"] / (x["population"] / 10_000)) / 100),
            2: 5 * min(1, (sum(x["worker_reports"].values()) / n) / 20),
            3: 5 * min(1, sum(x["worker_reports"][u] >= 20 for u in ws) / n),
            4: ind4,
            5: 10 * min(1, sum(x["worker_hazards"][u] >= 2 for u in ws) / n),
            6: 5 * min(1, (x["village_center_disputes"] / len(village_centers)) / 1),
            7: 5 * min(1, (x["escalations"] / len(town_centers)) / 5),
            8: 20 if r >= 0.98 else 0 if r < 0.80 else (100 * r - 80) / 18 * 20,
            9: 10 * min(1, patrol_ok / n),
            10: 10 * min(1, len(visited[t]) / assigned),
        }
        out[places[t]["name"]] = {
            "scores": [half_up(scores[i]) for i in range(1, 11)],
            "total": half_up(sum(scores.values())),
            "reported": x["reported"],
            "overdue": x["overdue"],
            "gridworkers": n,
            "patrol_compliant": patrol_ok,
            "special_assigned": assigned,
            "special_visited": len(visited[t]),
        }
    totals = sorted((v["total"] for v in out.values()), reverse=True)
    for v in out.values():
        v["rank"] = totals.index(v["total"]) + 1
    return out


def test_imported_month_gives_the_assessment_counted_by_hand(app):
    with app.app_context():
        install_default_categories()
        db.commit()
        kinds = {c.code: c.kind for c in db.query(Category)}
        db.remove()
    result = app.test_cli_runner().invoke(args=["import", "all", str(MONTH_DIR), "--no-progress"])
    assert result.exit_code == 0, result.output

    expected = by_hand(kinds)
    with app.app_context():
        from commandcenter.assessment.service import month_table

        city = db.query(Place).filter_by(level="city").one()
        table = month_table(city, "2026-11")
        db.remove()
    keys = [ind["key"] for ind in table["indicators"]]
    assert len(keys) == 10
    got = {row["town_name"]: row for row in table["rows"]}
    assert set(got) == set(expected) and len(got) == 2
    for town, want in expected.items():
        row = got[town]
        figures = row["figures"]
        assert figures["reported"] == want["reported"] and figures["overdue"] == want["overdue"], town
        assert len(figures["gridworker_reports"]) == want["gridworkers"], town
        assert figures["patrol_compliant"] == want["patrol_compliant"], town
        assert (figures["special_assigned"], figures["special_visited"]) == (
            want["special_assigned"],
            want["special_visited"],
        )
        assert [row["scores"][k] for k in keys] == want["scores"], town
        assert row["total"] == want["total"] and row["rank"] == want["rank"], town
    # the month is not trivial: the towns differ, and some indicators are short of full marks
    assert len({v["total"] for v in expected.values()}) == 2
    assert any(
        s < w for v in expected.values() for s, w in zip(v["scores"], (20, 5, 5, 10, 10, 5, 5, 20, 10, 10), strict=True)
    )
