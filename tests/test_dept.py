"""/dept/: a department handles its cases from its own queue (issue 14 §2): it sees the cases sent to it by
time left, accepts, answers with photos, returns a case it cannot handle, and asks for more time, which
an operator of the case's place approves (the limit moves) or refuses."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest

from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.dept import service
from commandcenter.models import AuditLog, Case, CasePhoto, CaseStep, ExtensionRequest
from commandcenter.timeutil import utcnow
from tests.conftest import csrf_from
from tests.test_case_screens import account, html, new_case

pytestmark = [pytest.mark.postgres]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def dept_post(client, case_id: int, action: str, data: dict | None = None, files=None):
    token = csrf_from(html(client.get(f"/dept/cases/{case_id}")))
    form = {"csrf_token": token, **(data or {})}
    if files:
        form["photos"] = files
    return client.post(
        f"/dept/cases/{case_id}/{action}", data=form, content_type="multipart/form-data" if files else None
    )


def set_due(app, case_id: int, delta: timedelta) -> None:
    with app.app_context():
        case = db.get(Case, case_id)
        case.handle_due = utcnow() + delta
        db.commit()


def test_the_queue_shows_the_departments_cases_by_time_left_coloured(app, world, client, auth):
    late = new_case(app, world, grid=0, state="handling", description="逾期的案件")
    soon = new_case(app, world, grid=1, state="dispatched", description="快到期的案件")
    later = new_case(app, world, grid=2, state="handling", description="时间充裕的案件")
    other = new_case(app, world, grid=0, state="dispatched", department=1)  # 东湖派出所's
    set_due(app, late.id, timedelta(hours=-2))
    set_due(app, soon.id, timedelta(hours=1))
    set_due(app, later.id, timedelta(days=20))
    auth.login("dept0")
    page = html(client.get("/dept/"))
    assert "城管局 · 部门工作台" in page
    assert other.number not in page
    handling = page[page.index("办理中") :]
    assert handling.index(late.number) < handling.index(later.number)  # least time left first
    row = lambda number: re.search(rf'<tr class="urgency-(\w+)" data-case="{number}">', page).group(1)  # noqa: E731
    assert (row(late.number), row(soon.number), row(later.number)) == ("overdue", "soon", "ok")
    assert re.search(rf'data-case="{late.number}">.*?badge bad time-left[^>]*>超时', page, re.S)
    # the department's own counts: three in hand, one of them overdue
    assert re.search(r'class="count-open">3<', page) and re.search(r'class="count-overdue bad">1<', page)
    # the case page of another department's case does not exist for it
    assert client.get(f"/dept/cases/{other.id}").status_code == 404


def test_other_roles_have_no_department_queue(app, world, client, auth):
    auth.login("town0_operator")
    assert client.get("/dept/").status_code == 403


def test_accept_then_feedback_with_photos_from_the_queue_alone(app, world, client, auth):
    case = new_case(app, world, grid=0, state="dispatched")
    auth.login("dept0")
    page = html(client.get(f"/dept/cases/{case.id}"))
    assert "签收处理" in page and "退回" in page
    assert dept_post(client, case.id, "accept").status_code == 302
    # a photo that is not an image: nothing happens, the field says why
    bad = dept_post(client, case.id, "feedback", {"note": "已清理"}, [(io.BytesIO(b"GIF89a..."), "x.gif")])
    assert bad.status_code == 400 and "不是 JPEG 或 PNG 图片" in html(bad)
    with app.app_context():
        assert db.get(Case, case.id).state == "handling"
    # an empty answer is refused with the field named
    empty = dept_post(client, case.id, "feedback", {"note": ""})
    assert empty.status_code == 400 and "请填写说明" in html(empty)
    done = dept_post(client, case.id, "feedback", {"note": "垃圾已清运"}, [(io.BytesIO(PNG), "现场.png")])
    assert done.status_code == 302
    follow = html(client.get(done.headers["Location"]))
    assert "已提交处理反馈，上传现场照片 1 张" in follow
    with app.app_context():
        got = db.get(Case, case.id)
        assert got.state == "feedback"
        assert db.query(CasePhoto).filter_by(case_id=case.id).count() == 1
        assert db.query(AuditLog).filter_by(action="case.feedback", object_id=str(case.id), success=True).count() == 1
    # it now waits for the center's verification, still listed as such
    queue = html(client.get("/dept/"))
    assert case.number in queue[queue.index("已反馈待核查") :]


def test_return_sends_the_case_back_to_the_center_with_its_reason(app, world, client, auth):
    case = new_case(app, world, grid=0, state="handling")
    auth.login("dept0")
    refused = dept_post(client, case.id, "return", {"reason": " "})
    assert refused.status_code == 400 and 'id="dept-return-reason-error"' in html(refused)
    response = dept_post(client, case.id, "return", {"reason": "不属于本部门职责，应由供电公司处理"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/dept/")
    assert case.number not in html(client.get("/dept/"))
    assert client.get(f"/dept/cases/{case.id}").status_code == 404  # no longer the department's
    with app.app_context():
        got = db.get(Case, case.id)
        assert (got.state, got.department_id, got.assignee_id) == ("registered", None, None)
        step = db.query(CaseStep).filter_by(case_id=case.id).order_by(CaseStep.id.desc()).first()
        assert step.action == "return" and step.note == "城管局退回：不属于本部门职责，应由供电公司处理"
    # the operator finds it back in the dispatch queue and may dispatch it again
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    auth.login("town0_operator")
    assert case.number in html(client.get("/cases/queue"))


def test_an_extension_is_asked_and_approved_by_the_center_moving_the_limit(app, world, client, auth):
    case = new_case(app, world, grid=0, state="handling")
    set_due(app, case.id, timedelta(hours=30))
    with app.app_context():
        old_due = db.get(Case, case.id).handle_due
    auth.login("dept0")
    too_many = dept_post(client, case.id, "extend", {"days": "40", "reason": "需协调"})
    assert too_many.status_code == 400 and "延期天数须在 1 到 30 个工作日之间" in html(too_many)
    assert dept_post(client, case.id, "extend", {"days": "3", "reason": "需协调产权单位"}).status_code == 302
    page = html(client.get(f"/dept/cases/{case.id}"))
    assert "延期审批中" in page and "申请延期 3 个工作日：需协调产权单位" in page
    assert 'action-extend"' not in page  # one pending request at a time
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})

    auth.login("town1_operator")  # another town: not his to decide (the case does not exist for him)
    assert client.get(f"/cases/{case.id}").status_code == 404
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})

    auth.login("town0_operator")
    page = html(client.get(f"/cases/{case.id}"))
    assert "延期申请" in page and "待审批" in page and "批准延期" in page and "驳回延期" in page
    token = csrf_from(page)
    response = client.post(f"/cases/{case.id}/actions/extend_approve", data={"csrf_token": token, "note": "同意"})
    assert response.status_code == 302
    with app.app_context():
        got = db.get(Case, case.id)
        assert got.handle_due > old_due + timedelta(days=2)
        request_row = db.query(ExtensionRequest).filter_by(case_id=case.id).one()
        assert (request_row.status, request_row.decided_by_id) == ("approved", account("town0_operator").id)
        step = db.query(CaseStep).filter_by(case_id=case.id).order_by(CaseStep.id.desc()).first()
        assert step.action == "extend_approve" and "办理时限由" in step.note
        assert db.query(AuditLog).filter_by(action="case.extend_approve", object_id=str(case.id)).count() == 1


def test_a_refusal_needs_a_note_and_leaves_the_limit(app, world):
    case = new_case(app, world, grid=0, state="handling")
    set_due(app, case.id, timedelta(hours=30))
    with app.app_context():
        got = db.get(Case, case.id)
        due = got.handle_due
        loop.request_extension(got, account("dept0"), days=2, reason="等待材料")
        with pytest.raises(loop.TransitionError, match="请填写说明"):
            loop.refuse_extension(got, account("town0_operator"), note="")
        db.rollback()
        got = db.get(Case, case.id)
        loop.refuse_extension(got, account("town0_operator"), note="时限内可完成")
        assert db.get(Case, case.id).handle_due == due
        assert db.query(ExtensionRequest).filter_by(case_id=case.id).one().status == "refused"
        # an overdue case can no longer ask
        got.handle_due = utcnow() - timedelta(minutes=1)
        db.commit()
        with pytest.raises(loop.TransitionError, match="办理时限已过"):
            loop.request_extension(got, account("dept0"), days=2, reason="再等等")


def test_counts_include_overdue_and_the_on_time_rate_of_the_month(app, world):
    on_time = new_case(app, world, grid=0, state="feedback")
    late = new_case(app, world, grid=1, state="feedback")
    new_case(app, world, grid=2, state="handling")
    with app.app_context():
        loop.close(db.get(Case, on_time.id), account("town0_operator"))
        c = db.get(Case, late.id)
        c.overdue = True
        db.commit()
        loop.close(c, account("town0_operator"))
        figures = service.counts(world.departments[0].id)
        assert (figures.open, figures.overdue, figures.closed_month, figures.on_time_month) == (1, 0, 2, 1)
        assert figures.on_time_rate == 0.5
