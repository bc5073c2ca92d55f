"""The points rulebook and rankings as plain functions (no database)."""

from __future__ import annotations

import pytest

from commandcenter.points.rules import (
    DEFAULT_RULES,
    KIND_KEYS,
    Tally,
    aggregate,
    collection_points,
    gridworker_points,
    merge_rules,
    ranked,
    top_bottom,
    validate_rules,
)


def rows(*totals: float) -> list[dict]:
    """Rows named A, B, C... with the given totals (points all in "event")."""
    return [{"id": i, "name": chr(65 + i), "points": {"event": t}, "total": t} for i, t in enumerate(totals)]


def ranks(result: list[dict]) -> list[tuple[str, int, bool]]:
    return [(r["name"], r["rank"], r["tied"]) for r in result]


def names(result: list[dict]) -> list[str]:
    return [r["name"] for r in result]


# --- pricing ---------------------------------------------------------------------------------------


def test_gridworker_points_by_default_rules():
    tally = Tally(signin_days=20, valid_reports=7, escalated_closed=1, hazard_reports=2, dispute_reports=1, visits=5)
    points = gridworker_points(tally, DEFAULT_RULES)
    assert points == {
        "signin": 20.0,
        "event": 14.0,
        "escalation_bonus": 3.0,
        "hazard": 4.0,
        "dispute": 2.0,
        "visit": 5.0,
        "collection": 0.0,
    }
    assert sum(points.values()) == 48.0


def test_gridworker_points_follow_a_changed_rulebook():
    rules = {**DEFAULT_RULES, "signin": 0.5, "event": 0, "visit": 1.25}
    points = gridworker_points(Tally(signin_days=3, valid_reports=4, visits=2), rules)
    assert points["signin"] == 1.5 and points["event"] == 0.0 and points["visit"] == 2.5


def test_nothing_done_earns_nothing():
    assert set(gridworker_points(Tally(), DEFAULT_RULES).values()) == {0.0}


def test_collection_points_per_record_and_never_negative():
    assert collection_points(250, DEFAULT_RULES) == 2.5
    assert collection_points(0, DEFAULT_RULES) == 0.0
    assert collection_points(-40, DEFAULT_RULES) == 0.0  # a registry that shrank earns nothing, loses nothing
    assert collection_points(3, DEFAULT_RULES) == 0.03  # no float noise such as 0.030000000000000002


def test_aggregate_sums_by_group_and_skips_rows_without_one():
    items = [
        {"g": 1, "points": {"signin": 1.0, "event": 2.0}},
        {"g": 1, "points": {"signin": 0.1, "event": 0.2}},
        {"g": 2, "points": {"signin": 5.0, "event": 0.0}},
        {"g": None, "points": {"signin": 99.0, "event": 99.0}},
    ]
    out = aggregate(items, lambda r: r["g"])
    assert set(out) == {1, 2}
    assert out[1]["signin"] == 1.1 and out[1]["event"] == 2.2 and out[1]["visit"] == 0.0
    assert out[2]["signin"] == 5.0
    assert aggregate([], lambda r: r["g"]) == {}


# --- the rulebook ----------------------------------------------------------------------------------


def test_validate_rules_accepts_numbers_and_numeric_text():
    data = {key: str(value) for key, value in DEFAULT_RULES.items()} | {"event": " 2.5 ", "visit": 0}
    rules, errors = validate_rules(data)
    assert errors == {}
    assert rules["event"] == 2.5 and rules["visit"] == 0.0 and rules["collection"] == 0.01


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "不能为负数"),
        ("abc", "须为数字"),
        ("", "请填写数值"),
        (None, "请填写数值"),
        (True, "请填写数值"),
        ("nan", "有限"),
        ("inf", "有限"),
        ("5000", "不能超过"),
    ],
)
def test_validate_rules_names_the_bad_field(value, message):
    rules, errors = validate_rules({**DEFAULT_RULES, "hazard": value})
    assert list(errors) == ["hazard"]
    assert errors["hazard"].startswith("隐患积分") and message in errors["hazard"]


def test_validate_rules_reports_missing_fields():
    _, errors = validate_rules({})
    assert set(errors) == set(KIND_KEYS)


def test_merge_rules_overrides_defaults_and_skips_bad_values():
    rules, problems = merge_rules({"event": 5, "visit": -2, "hazard": "x", "signin": True, "unknown": 7})
    assert rules["event"] == 5.0
    assert rules["visit"] == DEFAULT_RULES["visit"] and rules["hazard"] == DEFAULT_RULES["hazard"]
    assert rules["signin"] == DEFAULT_RULES["signin"]
    assert "unknown" not in rules
    assert len(problems) == 3 and any("visit" in p for p in problems)


@pytest.mark.parametrize("stored", [None, [], "text", 3])
def test_merge_rules_with_nothing_usable_gives_defaults(stored):
    rules, problems = merge_rules(stored)
    assert rules == DEFAULT_RULES
    assert bool(problems) == (stored is not None)


# --- ranks ---------------------------------------------------------------------------------------


def test_ranked_orders_highest_first_with_shared_ranks():
    assert ranks(ranked(rows(5, 9, 9, 1, 7))) == [
        ("B", 1, True),
        ("C", 1, True),
        ("E", 3, False),
        ("A", 4, False),
        ("D", 5, False),
    ]


def test_ranked_by_a_kind_of_points():
    data = [
        {"id": 1, "name": "A", "points": {"visit": 1.0}, "total": 10.0},
        {"id": 2, "name": "B", "points": {"visit": 4.0}, "total": 2.0},
    ]
    assert names(ranked(data, "visit")) == ["B", "A"]
    assert names(ranked(data)) == ["A", "B"]
    assert ranked(data, "hazard")[0]["rank"] == 1 and ranked(data, "hazard")[1]["rank"] == 1  # missing = 0


def test_ranked_ignores_float_noise():
    data = rows(0.1 + 0.2, 0.3)
    assert [r["rank"] for r in ranked(data)] == [1, 1]


def test_ranked_does_not_touch_its_input():
    data = rows(1, 2)
    ranked(data)
    assert "rank" not in data[0]


def test_ranked_all_equal_and_empty():
    assert ranks(ranked(rows(4, 4, 4))) == [("A", 1, True), ("B", 1, True), ("C", 1, True)]
    assert ranked([]) == []
    assert ranks(ranked(rows(2))) == [("A", 1, False)]


# --- top and bottom three ------------------------------------------------------------------------


def test_top_bottom_plain():
    top, bottom = top_bottom(rows(10, 9, 8, 7, 6, 5, 4))
    assert names(top) == ["A", "B", "C"]
    assert names(bottom) == ["E", "F", "G"]  # best first, the lowest last


def test_top_three_includes_a_tie_at_the_boundary():
    top, bottom = top_bottom(rows(10, 9, 8, 8, 5, 4, 3, 2))
    assert ranks(top) == [("A", 1, False), ("B", 2, False), ("C", 3, True), ("D", 3, True)]
    assert names(bottom) == ["F", "G", "H"]


def test_bottom_three_includes_a_tie_at_the_boundary():
    top, bottom = top_bottom(rows(10, 9, 8, 7, 3, 3, 2, 1))
    assert names(top) == ["A", "B", "C"]
    assert ranks(bottom) == [("E", 5, True), ("F", 5, True), ("G", 7, False), ("H", 8, False)]


def test_tie_for_first_place_makes_a_longer_top():
    top, _ = top_bottom(rows(9, 9, 9, 9, 1, 0, 0, -1))
    assert [r["rank"] for r in top] == [1, 1, 1, 1]


def test_a_tie_spanning_top_and_bottom_stays_on_top():
    top, bottom = top_bottom(rows(10, 9, 8, 8, 7, 6))
    assert names(top) == ["A", "B", "C", "D"]
    assert names(bottom) == ["E", "F"]  # C and D also lie among the lowest three, but they are on top
    assert not {r["id"] for r in top} & {r["id"] for r in bottom}


def test_all_equal_everyone_shares_first_and_nobody_is_last():
    top, bottom = top_bottom(rows(3, 3, 3, 3, 3))
    assert [r["rank"] for r in top] == [1] * 5 and all(r["tied"] for r in top)
    assert bottom == []


def test_fewer_rows_than_three():
    top, bottom = top_bottom(rows(4, 2))
    assert names(top) == ["A", "B"] and bottom == []
    top, bottom = top_bottom(rows(1))
    assert names(top) == ["A"] and bottom == []


def test_empty():
    assert top_bottom([]) == ([], [])


def test_n_other_than_three():
    top, bottom = top_bottom(rows(5, 4, 3, 2, 1), n=1)
    assert names(top) == ["A"] and names(bottom) == ["E"]
