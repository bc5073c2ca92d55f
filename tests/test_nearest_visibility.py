"""就近派遣 across grids (issue 14 §3): a town center may assign a case to a gridworker of another grid of its
town (loop.dispatch). That gridworker then sees and handles exactly that case — not the other cases of the
grid — and only while it is assigned to him (loop.may_see: reporter, assignee, or his own grid)."""

from __future__ import annotations

import pytest

from commandcenter.access import Forbidden
from commandcenter.cases import actions, loop
from commandcenter.cases.queries import visible_cases
from commandcenter.db import db
from commandcenter.models import Case
from tests.conftest import report

pytestmark = [pytest.mark.postgres]


def registered(w, grid: int) -> Case:
    case = report(w, "gw0", grid=grid)
    loop.register(db.get(Case, case.id), w.a("town0_operator"))
    return db.get(Case, case.id)


def visible_ids(account) -> set[int]:
    return {c.id for c in db.execute(visible_cases(account)).scalars()}


def test_a_gridworker_of_another_grid_sees_the_case_assigned_to_him_and_only_while_it_is(w):
    assigned, other = registered(w, 0), registered(w, 0)
    gw1 = w.a("gw1")  # grid 1: the same village and town, not the case's grid
    assert not loop.may_see(gw1, assigned) and assigned.id not in visible_ids(gw1)
    actions.perform(w.a("town0_operator"), assigned, "dispatch", actions.ActionInput(assignee_id=gw1.id))
    assert loop.may_see(gw1, assigned) and assigned.id in visible_ids(gw1)
    assert not loop.may_see(gw1, other) and other.id not in visible_ids(gw1)  # the rest of grid 0 stays hidden
    actions.perform(gw1, assigned, "accept", actions.ActionInput())
    assert db.get(Case, assigned.id).state == "handling"
    with pytest.raises(Forbidden):  # nothing else of grid 0 through him
        actions.perform(gw1, other, "escalate", actions.ActionInput(to_level="village", note="试图流转"))
    # once no longer his (escalated: the handler is cleared), the case leaves his reach
    actions.perform(gw1, assigned, "escalate", actions.ActionInput(to_level="village", note="需村社协调"))
    case = db.get(Case, assigned.id)
    assert case.assignee_id is None and not loop.may_see(gw1, case) and case.id not in visible_ids(gw1)


def test_a_gridworker_of_another_town_is_never_assigned(w):
    case = registered(w, 0)
    with pytest.raises(loop.TransitionError) as exc:
        actions.perform(w.a("town0_operator"), case, "dispatch", actions.ActionInput(assignee_id=w.a("gw4").id))
    assert exc.value.field == "assignee_id"
    assert not loop.may_see(w.a("gw4"), db.get(Case, case.id))


def test_a_village_center_sends_only_gridworkers_of_its_own_village(w):
    """The dispatcher's jurisdiction bounds 就近派遣 too: village 0's center may not hand a case to a gridworker
    of village 1 (same town), who would then see it; the town center may."""
    case = registered(w, 0)
    gw2 = w.a("gw2")  # grid 2: village 1 of the same town
    assert gw2.town_id == case.town_id and gw2.village_id != case.village_id
    with pytest.raises(loop.TransitionError) as exc:
        actions.perform(w.a("village0_admin"), case, "dispatch", actions.ActionInput(assignee_id=gw2.id))
    assert exc.value.field == "assignee_id" and "辖区" in exc.value.message
    assert not loop.may_see(gw2, db.get(Case, case.id))
    actions.perform(w.a("village0_admin"), case, "dispatch", actions.ActionInput(assignee_id=w.a("gw1").id))
    assert db.get(Case, case.id).assignee_id == w.a("gw1").id
