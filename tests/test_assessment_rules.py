"""The ten indicators of the monthly assessment (domain.md §4) as pure functions: no database."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commandcenter.assessment.rules import (
    DEFAULT_RULES,
    INDICATOR_KEYS,
    RulesError,
    TownFigures,
    actuals,
    build_table,
    notes,
    rank,
    round2,
    score,
    timeliness_score,
    total,
    validate_rules,
    weakest,
)

WEIGHTS = {item["key"]: item["weight"] for item in DEFAULT_RULES["indicators"]}


def perfect(**changes) -> TownFigures:
    """A town at full marks on every indicator; each test spoils one thing."""
    base = dict(
        population=100_000,
        reported=1000,
        gridworker_reports=[20, 20],
        gridworker_hazards=[2, 2],
        town_center_reports=[20],
        town_center_escalations=5,
        village_centers=2,
        village_center_disputes=2,
        overdue=0,
        patrol_compliant=2,
        special_assigned=4,
        special_visited=4,
    )
    base.update(changes)
    return TownFigures(**base)


def test_defaults_are_the_published_table():
    assert [(i["name"], i["weight"], i["standard"]) for i in DEFAULT_RULES["indicators"]] == [
        ("事项总量", 20, 100),
        ("网格员上报", 5, 20),
        ("达标网格员", 5, 1.0),
        ("达标综治中心", 10, 20),
        ("隐患排查", 10, 1.0),
        ("矛盾纠纷", 5, 1),
        ("事项流转", 5, 5),
        ("处理及时率", 20, 0.98),
        ("网格巡查", 10, 1.0),
        ("特殊人群走访（两类）", 10, 1.0),
    ]
    assert sum(WEIGHTS.values()) == 100
    assert DEFAULT_RULES["timeliness"] == {"full": 0.98, "zero": 0.80}


def test_perfect_town_scores_100_and_has_no_weakest_indicator():
    s = score(perfect())
    assert s == {key: float(WEIGHTS[key]) for key in INDICATOR_KEYS}
    assert total(s) == 100.0
    assert weakest(s) == []


# --- each indicator below, at and above its standard --------------------------------------------


def test_1_reports_per_10k_people():
    # population 100,000 = 10 units of 10k: the standard is 100 per 10k = 1000 events
    assert score(perfect(reported=500))["reports_per_10k"] == 10.0  # below: 20 × 50/100
    assert score(perfect(reported=1000))["reports_per_10k"] == 20.0  # at
    assert score(perfect(reported=3000))["reports_per_10k"] == 20.0  # above: capped
    assert actuals(perfect(reported=1234))["reports_per_10k"] == pytest.approx(123.4)


def test_2_reports_per_gridworker():
    assert score(perfect(gridworker_reports=[10, 20]))["reports_per_gridworker"] == pytest.approx(5 * 15 / 20)
    assert score(perfect(gridworker_reports=[25, 15]))["reports_per_gridworker"] == 5.0  # average exactly 20
    assert score(perfect(gridworker_reports=[100, 0]))["reports_per_gridworker"] == 5.0  # capped


def test_3_gridworkers_meeting_the_quota_of_20():
    assert score(perfect(gridworker_reports=[19, 20]))["gridworkers_meeting_quota"] == 2.5  # 19 is below
    assert score(perfect(gridworker_reports=[20, 21]))["gridworkers_meeting_quota"] == 5.0
    assert score(perfect(gridworker_reports=[0, 0, 0, 40]))["gridworkers_meeting_quota"] == 1.25


def test_4_one_town_center_against_20():
    assert score(perfect(town_center_reports=[15]))["town_center_reports"] == 7.5
    assert score(perfect(town_center_reports=[20]))["town_center_reports"] == 10.0
    assert score(perfect(town_center_reports=[60]))["town_center_reports"] == 10.0


def test_4_several_centers_count_those_meeting_the_standard():
    # 60 reports in all, but only one of the two centers reached 20: half the centers meet it
    assert score(perfect(town_center_reports=[60, 19]))["town_center_reports"] == 5.0
    assert score(perfect(town_center_reports=[20, 20, 25]))["town_center_reports"] == 10.0
    assert score(perfect(town_center_reports=[0, 0]))["town_center_reports"] == 0.0


def test_5_gridworkers_with_two_hazard_reports():
    assert score(perfect(gridworker_hazards=[1, 2]))["hazard_reporting"] == 5.0
    assert score(perfect(gridworker_hazards=[2, 2]))["hazard_reporting"] == 10.0
    assert score(perfect(gridworker_hazards=[9, 3]))["hazard_reporting"] == 10.0


def test_6_disputes_from_village_centers():
    assert score(perfect(village_centers=4, village_center_disputes=3))["village_disputes"] == pytest.approx(3.75)
    assert score(perfect(village_centers=4, village_center_disputes=4))["village_disputes"] == 5.0
    assert score(perfect(village_centers=4, village_center_disputes=9))["village_disputes"] == 5.0


def test_7_escalations_by_the_town_center():
    assert score(perfect(town_center_escalations=4))["town_escalations"] == 4.0
    assert score(perfect(town_center_escalations=5))["town_escalations"] == 5.0
    assert score(perfect(town_center_escalations=12))["town_escalations"] == 5.0
    # two centers: 5 each
    assert score(perfect(town_center_reports=[20, 20], town_center_escalations=5))["town_escalations"] == 2.5


def test_9_patrol():
    assert score(perfect(patrol_compliant=1))["patrol"] == 5.0
    assert score(perfect(patrol_compliant=2))["patrol"] == 10.0


def test_10_special_population_visits():
    assert score(perfect(special_visited=3))["special_visits"] == 7.5
    assert score(perfect(special_visited=4))["special_visits"] == 10.0
    assert score(perfect(special_visited=0))["special_visits"] == 0.0


# --- 8: timeliness and its cut-offs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "overdue", "expected"),
    [
        (100, 0, 20.0),
        (100, 2, 20.0),  # exactly 98 %: full marks
        (50, 1, 20.0),  # 49/50 is exactly 98 % too
        (1000, 21, 20 * (97.9 - 80) / 18),  # just below 98 %
        (10000, 201, 20 * (97.99 - 80) / 18),
        (100, 11, 20 * (89 - 80) / 18),  # inside the band: (100·r − 80) / 18 × 20
        (1000, 199, 20 * (80.1 - 80) / 18),  # just above 80 %
        (100, 20, 0.0),  # exactly 80 %: (80 − 80)/18 = 0
        (5, 1, 0.0),
        (1000, 201, 0.0),  # just below 80 %: nothing
        (100, 100, 0.0),
    ],
)
def test_8_timeliness_cut_offs(new, overdue, expected):
    assert timeliness_score(new, overdue, 20) == pytest.approx(expected, abs=1e-9)
    assert score(perfect(reported=new, overdue=overdue))["timeliness"] == pytest.approx(expected, abs=1e-9)


def test_8_timeliness_at_98_percent_is_exact_not_a_float_accident():
    # 0.98 is not representable in binary: the comparison must not drop 98 % into the band
    for new in (50, 100, 150, 350, 1250, 5000):
        assert timeliness_score(new, new * 2 // 100, 20) == 20.0
    assert timeliness_score(100, 20, 20) == 0.0


def test_8_timeliness_follows_tuned_cut_offs():
    rules = validate_rules({"timeliness": {"full": 0.95, "zero": 0.5}})
    assert score(perfect(reported=100, overdue=5), rules)["timeliness"] == 20.0
    assert score(perfect(reported=100, overdue=50), rules)["timeliness"] == 0.0
    assert score(perfect(reported=100, overdue=20), rules)["timeliness"] == pytest.approx(20 * 0.30 / 0.45)


# --- zero denominators ------------------------------------------------------------------------------


def test_no_gridworkers_scores_0_on_the_gridworker_indicators_with_a_note():
    f = perfect(gridworker_reports=[], gridworker_hazards=[], patrol_compliant=0)
    s = score(f)
    for key in ("reports_per_gridworker", "gridworkers_meeting_quota", "hazard_reporting", "patrol"):
        assert s[key] == 0.0
        assert actuals(f)[key] is None
        assert "无在岗网格员" in notes(f)[key]
    assert s["reports_per_10k"] == 20.0  # the others are untouched
    assert total(s) == 70.0


def test_no_new_events_makes_timeliness_undefined_and_worth_nothing():
    f = perfect(
        reported=0,
        overdue=0,
        gridworker_reports=[0, 0],
        gridworker_hazards=[0, 0],
        town_center_reports=[0],
        town_center_escalations=0,
        village_center_disputes=0,
    )
    s = score(f)
    assert actuals(f)["timeliness"] is None
    assert s["timeliness"] == 0.0
    assert "无新增事件" in notes(f)["timeliness"]
    assert s["reports_per_10k"] == 0.0


def test_no_population_no_centers():
    f = perfect(
        population=None, town_center_reports=[], town_center_escalations=0, village_centers=0, village_center_disputes=0
    )
    s = score(f)
    assert (s["reports_per_10k"], s["town_center_reports"], s["town_escalations"], s["village_disputes"]) == (
        0,
        0,
        0,
        0,
    )
    assert set(notes(f)) == {"reports_per_10k", "town_center_reports", "town_escalations", "village_disputes"}
    assert score(perfect(population=0))["reports_per_10k"] == 0.0


def test_nobody_to_visit_loses_nothing_but_the_rate_is_undefined():
    f = perfect(special_assigned=0, special_visited=0)
    assert score(f)["special_visits"] == 10.0
    assert actuals(f)["special_visits"] is None
    assert "不扣分" in notes(f)["special_visits"]


def test_patrol_undefined_before_the_first_workday():
    f = perfect(patrol_compliant=None)
    assert score(f)["patrol"] == 0.0
    assert actuals(f)["patrol"] is None
    assert "工作日" in notes(f)["patrol"]


def test_an_empty_town_does_not_crash():
    f = TownFigures()
    s = score(f)
    assert s["special_visits"] == 10.0 and total(s) == 10.0
    table = build_table({1: f}, {1: "空镇"}, DEFAULT_RULES)
    assert table["rows"][0]["total"] == 10.0 and table["rows"][0]["rank"] == 1


# --- rounding, ranks, weakest -------------------------------------------------------------------------


def test_round_half_up_on_the_printed_decimal():
    assert round2(2.675) == 2.68  # round() would give 2.67 (binary 2.67499...)
    assert round2(0.125) == 0.13
    assert round2(1 / 3) == 0.33
    assert round2(19.999) == 20.0


def test_total_is_the_rounded_sum_of_unrounded_scores():
    # three scores of 1/3 each show as 0.33, but the total is 1.00, not 0.99
    scores = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert [round2(v) for v in scores.values()] == [0.33, 0.33, 0.33]
    assert total(scores) == 1.0
    # in a real row: 2/3 of 5 points three times
    f = perfect(gridworker_reports=[20, 20, 0], gridworker_hazards=[2, 2, 0], patrol_compliant=2, reported=1000)
    row = build_table({1: f}, {1: "甲"}, DEFAULT_RULES)["rows"][0]
    raw = score(f)
    assert row["total"] == round2(sum(raw.values()))
    assert row["scores"]["hazard_reporting"] == 6.67 and row["scores"]["patrol"] == 6.67


def test_shared_ranks_skip_the_next():
    assert rank({1: 90.0, 2: 90.0, 3: 80.0}) == {1: 1, 2: 1, 3: 3}
    assert rank({1: 50.0, 2: 70.0, 3: 70.0, 4: 70.0, 5: 10.0}) == {2: 1, 3: 1, 4: 1, 1: 4, 5: 5}
    assert rank({}) == {}


def test_table_rows_sorted_by_rank_with_ties():
    a = perfect()
    b = perfect()
    c = perfect(patrol_compliant=0)
    table = build_table({1: c, 2: a, 3: b}, {1: "丙", 2: "乙", 3: "甲"}, DEFAULT_RULES)
    # ties keep the order the towns were given in (the service gives them by code)
    assert [(r["town_name"], r["total"], r["rank"]) for r in table["rows"]] == [
        ("乙", 100.0, 1),
        ("甲", 100.0, 1),
        ("丙", 90.0, 3),
    ]
    assert [i["key"] for i in table["indicators"]] == list(INDICATOR_KEYS)


def test_weakest_are_the_lowest_shares_of_weight_ties_included():
    f = perfect(patrol_compliant=0, special_visited=0, village_center_disputes=1, town_center_escalations=4)
    s = score(f)
    # patrol 0/10 and special visits 0/10 tie at 0 %, village disputes 2.5/5 = 50 %, escalations 80 %
    assert weakest(s) == ["patrol", "special_visits", "village_disputes"]  # lowest first
    rules = validate_rules({"weakest": 1})
    assert set(weakest(s, rules)) == {"patrol", "special_visits"}  # tie at the boundary: both named
    # weakest counts by share of weight, not by points lost: 2.5 lost of 5 is weaker than 4 lost of 20
    g = perfect(village_center_disputes=1, population=10_000, reported=100, overdue=4)
    assert weakest(score(g), validate_rules({"weakest": 1})) == ["village_disputes"]


# --- rules override validation ----------------------------------------------------------------------


def test_override_changes_weights_and_standards():
    rules = validate_rules(
        {
            "indicators": [
                {"key": "reports_per_10k", "weight": 15, "standard": 50},
                {"key": "reports_per_gridworker", "weight": 10},
            ]
        }
    )
    assert score(perfect(reported=250), rules)["reports_per_10k"] == 7.5  # 25 per 10k of 50 → half of 15
    assert score(perfect(), rules)["reports_per_gridworker"] == 10.0
    assert DEFAULT_RULES["indicators"][0]["weight"] == 20  # the defaults are not touched


def test_override_quota():
    rules = validate_rules({"indicators": {"gridworkers_meeting_quota": {"quota": 25}}})
    assert score(perfect(gridworker_reports=[20, 25]), rules)["gridworkers_meeting_quota"] == 2.5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"indicators": [{"key": "patrol", "weight": -1}]}, "patrol.weight"),
        ({"indicators": [{"key": "patrol", "weight": "x"}]}, "patrol.weight"),
        ({"indicators": [{"key": "patrol", "weight": True}]}, "patrol.weight"),
        ({"indicators": [{"key": "patrol", "weight": float("nan")}]}, "patrol.weight"),
        ({"indicators": [{"key": "reports_per_10k", "standard": 0}]}, "reports_per_10k.standard"),
        ({"indicators": [{"key": "reports_per_10k", "standard": -5}]}, "reports_per_10k.standard"),
        ({"indicators": [{"key": "patrol", "standard": 1.5}]}, "patrol.standard"),
        ({"indicators": [{"key": "hazard_reporting", "quota": 0}]}, "hazard_reporting.quota"),
        ({"indicators": [{"key": "nonsense", "weight": 5}]}, "indicators"),
        ({"indicators": [{"key": "patrol", "weight": 20}]}, "weights"),  # sum 110
        ({"timeliness": {"full": 0.8, "zero": 0.8}}, "timeliness.full"),
        ({"timeliness": {"full": 0.7, "zero": 0.8}}, "timeliness.full"),
        ({"timeliness": {"full": 1.01, "zero": 0.8}}, "timeliness.full"),
        ({"timeliness": {"zero": 0}}, "timeliness.zero"),
        ({"timeliness": {"zero": -0.1}}, "timeliness.zero"),
        ({"timeliness": {"full": "abc"}}, "timeliness.full"),
        ({"weakest": 11}, "weakest"),
    ],
)
def test_override_validation_names_the_field(data, field):
    with pytest.raises(RulesError) as exc:
        validate_rules(data)
    assert field in exc.value.errors
    assert exc.value.errors[field]  # a Chinese message


def test_override_accepts_the_edges():
    rules = validate_rules(
        {
            "timeliness": {"full": 1, "zero": 0.01},
            "indicators": [{"key": "patrol", "weight": 0}, {"key": "special_visits", "weight": 20}],
        }
    )
    assert rules["timeliness"] == {"full": 1, "zero": 0.01}
    assert score(perfect(patrol_compliant=0), rules)["patrol"] == 0.0
    assert "patrol" not in weakest(score(perfect(patrol_compliant=0), rules), rules)  # weight 0: never named
    with pytest.raises(RulesError):
        validate_rules("not a dict")


# --- properties ---------------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=5000)
figures_strategy = st.builds(
    TownFigures,
    population=st.one_of(st.none(), st.integers(min_value=0, max_value=2_000_000)),
    reported=counts,
    gridworker_reports=st.lists(st.integers(0, 200), max_size=30),
    gridworker_hazards=st.lists(st.integers(0, 20), max_size=30),
    town_center_reports=st.lists(st.integers(0, 100), max_size=4),
    town_center_escalations=st.integers(0, 100),
    village_centers=st.integers(0, 30),
    village_center_disputes=st.integers(0, 100),
    overdue=counts,
    patrol_compliant=st.one_of(st.none(), st.integers(0, 30)),
    special_assigned=st.integers(0, 500),
    special_visited=st.integers(0, 500),
)
weights_strategy = st.lists(st.integers(0, 30), min_size=10, max_size=10).filter(lambda ws: sum(ws) > 0)


@settings(max_examples=300, deadline=None)
@given(figures_strategy)
def test_every_score_within_its_weight_and_total_within_100(f):
    f.overdue = min(f.overdue, f.reported)
    f.gridworker_hazards = f.gridworker_hazards[: len(f.gridworker_reports)] + [0] * max(
        0, len(f.gridworker_reports) - len(f.gridworker_hazards)
    )
    if f.patrol_compliant is not None:
        f.patrol_compliant = min(f.patrol_compliant, f.gridworkers)
    f.special_visited = min(f.special_visited, f.special_assigned)
    s = score(f)
    for key in INDICATOR_KEYS:
        assert 0.0 <= s[key] <= WEIGHTS[key]
    assert 0.0 <= total(s) <= 100.0


@settings(max_examples=200, deadline=None)
@given(weights_strategy, figures_strategy, figures_strategy)
def test_any_valid_weights_keep_scores_within_them_and_ranks_consistent(ws, f, g):
    scaled = [w * 100 / sum(ws) for w in ws]
    scaled[-1] = 100 - sum(scaled[:-1])
    if scaled[-1] < 0:
        return
    data = copy.deepcopy(DEFAULT_RULES)
    for item, w in zip(data["indicators"], scaled, strict=True):
        item["weight"] = w
    try:
        rules = validate_rules(data)
    except RulesError:
        return  # float residue in the sum: not what this property is about
    for figures in (f, g):
        figures.overdue = min(figures.overdue, figures.reported)
        if figures.patrol_compliant is not None:
            figures.patrol_compliant = min(figures.patrol_compliant, figures.gridworkers)
        figures.special_visited = min(figures.special_visited, figures.special_assigned)
    table = build_table({1: f, 2: g}, {1: "甲", 2: "乙"}, rules)
    by_weight = {item["key"]: item["weight"] for item in rules["indicators"]}
    for row in table["rows"]:
        for key, value in row["scores"].items():
            assert 0.0 <= value <= round2(by_weight[key])
        assert 0.0 <= row["total"] <= 100.0
    first, second = table["rows"]
    assert first["total"] >= second["total"]
    assert second["rank"] == (1 if first["total"] == second["total"] else 2)
