"""One home for every step of the case loop: the pages and the JSON API take each step through `perform`.

A door (the case page's form, the API's JSON body) only turns its input into an `ActionInput`; every
check lives here or in loop.py, in this order, the same for every door:
1. the role has the step's permission and the case is within the account's reach (Forbidden);
2. the step is legal from the case's state (TransitionError without a field: a conflict);
3. each field (TransitionError naming the field, in the domain's names: note, department_id, ...).
`can_take` answers the same question for the buttons of the case page, so that no button only leads to
an error. `tests/test_action_parity.py` runs every action through both doors and expects the same outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..access import Forbidden, has_permission
from ..models import CASE_LEVELS, Account, Case
from ..timeutil import utcnow
from . import loop

ACTIONS = tuple(loop.ALLOWED_FROM)
# steps whose note an operator may publish as the reply to the public (公开答复, shown by Open311)
PUBLIC_NOTE_ACTIONS = frozenset({"register", "reject", "duplicate", "dispatch", "feedback", "close"})
ORIGINAL_NUMBER_MAX = 24
# steps the gridworker's phone may queue offline and send again: they carry its idempotency key (client_key)
KEYED_ACTIONS = frozenset({"accept", "feedback"})


@dataclass
class ActionInput:
    """What a door hands over. `note` carries the step's text (a reason, a story) whatever the door calls it."""

    note: str | None = None
    department_id: int | None = None
    assignee_id: int | None = None
    to_level: str | None = None
    original_number: str | None = None
    public: bool = False
    days: int | None = None  # 申请延期: working days asked for
    # 重新定位: a standard address (标准地址) by id, or a point (WGS-84) with an optional address text
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    address_id: int | None = None
    client_key: str | None = None  # the phone's idempotency key (KEYED_ACTIONS only): a resend finds its step


class UnknownAction(Exception):
    def __init__(self, action: str):
        super().__init__(action)
        self.action = action


def authorize(account: Account, case: Case, action: str) -> None:
    """Role and jurisdiction, before anything about the case's state is revealed."""
    if action not in loop.ALLOWED_FROM:
        raise UnknownAction(action)
    if not has_permission(account, loop.PERMISSION_OF[action]):
        raise Forbidden("本账号的角色无权执行该操作")
    if not loop.may_act_on(account, case):
        raise Forbidden("该案件不在本账号辖区内")


def can_take(account: Account, case: Case, action: str) -> bool:
    """Would `perform` accept this step now (fields aside)? The case page shows exactly these buttons."""
    try:
        authorize(account, case, action)
    except (Forbidden, UnknownAction):
        return False
    if case.state not in loop.ALLOWED_FROM[action]:
        return False
    if action == "pause":
        return case.paused_at is None
    if action == "resume":
        return case.paused_at is not None
    if action == "transfer":
        return case.transfer_due is not None and case.transferred_at is None and utcnow() <= case.transfer_due
    if action == "self_close":
        return case.reporter_id == account.id and not loop.limits_of(case).must_escalate
    if action == "escalate":
        return case.level != CASE_LEVELS[-1]
    if action == "outstanding":
        return not case.outstanding
    if action == "extend":
        return case.handle_due is not None and not case.overdue and loop.pending_extension(case) is None
    if action in ("extend_approve", "extend_refuse"):
        return loop.pending_extension(case) is not None
    return True


def available(account: Account, case: Case) -> list[str]:
    return [action for action in ACTIONS if can_take(account, case, action)]


def levels_above(case: Case) -> list[str]:
    return [lv for lv in CASE_LEVELS if loop.LEVEL_RANK[lv] > loop.LEVEL_RANK[case.level]]


def departments_serving(case: Case) -> list:
    """Departments that serve the case's place: city-wide ones and those of its town or village."""
    from .queries import departments_for

    return departments_for(case)


def _original(account: Account, number: str | None) -> Case:
    """The original of a duplicate, by its number; one answer for 'no such case' and 'not yours'."""
    number = (number or "").strip().upper()
    if not number:
        raise loop.TransitionError("请填写原案卷号", "original_number")
    if len(number) > ORIGINAL_NUMBER_MAX:
        raise loop.TransitionError(f"原案卷号不能超过 {ORIGINAL_NUMBER_MAX} 个字符", "original_number")
    from ..db import db

    original = db.execute(select(Case).where(Case.number == number)).scalar_one_or_none()
    if original is None or not loop.may_see(account, original):
        raise loop.TransitionError(f"原案卷号「{number}」不存在或不在本辖区内", "original_number")
    return original


def perform(account: Account, case: Case, action: str, data: ActionInput) -> Case:
    """Take one step of the loop for `account`. Raises Forbidden, loop.TransitionError or UnknownAction;
    on success the step, its history and its outbox row are committed."""
    authorize(account, case, action)
    if data.client_key:
        if action not in KEYED_ACTIONS:
            raise loop.TransitionError("该操作不接受幂等键", "client_key")
        if loop.step_by_key(case, account, action, data.client_key) is not None:
            return case  # a resend of a step already taken: no second step, whatever the state is now
    if case.state not in loop.ALLOWED_FROM[action]:
        loop.refuse_state(case, action)
    public = bool(data.public) and action in PUBLIC_NOTE_ACTIONS
    if public and not (data.note or "").strip():
        raise loop.TransitionError("勾选公开答复时须填写说明", "note")
    if action == "register":
        return loop.register(case, account, note=data.note, public=public)
    if action == "reject":
        return loop.reject(case, account, reason=data.note, public=public)
    if action == "duplicate":
        return loop.mark_duplicate(
            case, account, _original(account, data.original_number), note=data.note, public=public
        )
    if action == "dispatch":
        if data.department_id is None and data.assignee_id is None:
            raise loop.TransitionError("请选择处置部门", "department_id")
        if data.department_id is not None and data.department_id not in {d.id for d in departments_serving(case)}:
            raise loop.TransitionError("处置部门不存在或不服务该案件所在地", "department_id")
        return loop.dispatch(
            case, account, department_id=data.department_id, assignee_id=data.assignee_id, note=data.note, public=public
        )
    if action == "accept":
        return loop.accept(case, account, client_key=data.client_key)
    if action == "feedback":
        return loop.feedback(case, account, note=data.note, public=public, client_key=data.client_key)
    if action == "close":
        return loop.close(case, account, note=data.note, public=public)
    if action == "rework":
        return loop.rework(case, account, note=data.note)
    if action == "escalate":
        if data.to_level is not None and data.to_level not in levels_above(case):
            raise loop.TransitionError("请选择要流转到的上级层级", "to_level")
        return loop.escalate(case, account, to_level=data.to_level, note=data.note)
    if action == "self_close":
        return loop.self_close(case, account, note=data.note)
    if action == "transfer":
        return loop.transfer_to_city(case, account)
    if action == "pause":
        return loop.pause(case, account, reason=data.note)
    if action == "resume":
        return loop.resume(case, account)
    if action == "outstanding":
        return loop.mark_outstanding(case, account, story=data.note)
    if action == "return":
        return loop.return_case(case, account, reason=data.note)
    if action == "extend":
        loop.request_extension(case, account, days=data.days, reason=data.note)
        return case
    if action == "extend_approve":
        loop.approve_extension(case, account, note=data.note)
        return case
    if action == "extend_refuse":
        loop.refuse_extension(case, account, note=data.note)
        return case
    if action == "relocate":
        from .relocate import relocate

        return relocate(
            case,
            account,
            lat=data.lat,
            lon=data.lon,
            address=data.address,
            address_id=data.address_id,
            note=data.note,
        )
    raise UnknownAction(action)
