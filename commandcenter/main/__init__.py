"""The landing page: what this account may open, nothing more."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for

from ..access import current_account, has_permission, public

bp = Blueprint("main", __name__)

# (endpoint, label, permission): shown only when the blueprint exists and the role has the permission
NAV = (
    ("wall.index", "指挥大屏", "wall.view"),
    ("alerts.index", "临期预警", "alert.ack"),
    ("cases.queue", "立案派遣", "case.register"),
    ("cases.index", "事件列表", "case.view"),
    ("hotline.new", "12345 热线受理", "hotline.take"),
    ("drill.index", "逐级下钻", "drill.view"),
    ("assessment.index", "月度考核", "assessment.view"),
    ("assessment.rules_page", "考核规则", "rules.edit"),
    ("points.index", "积分排名", "points.view"),
    ("points.rules", "积分规则", "rules.edit"),
    ("bulletin.index", "月度通报", "bulletin.view"),
    ("persons.index", "重点人员", "person.view"),
    ("mobile.index", "领导移动端", "mobile.view"),
    ("gridworker.index", "网格员工作台", "fieldwork.app"),
    ("dept.index", "部门工作台", "dept.queue"),
    ("admin.accounts", "账号管理", "account.manage"),
    ("admin.ops", "任务队列", "ops.view"),
    ("admin.calendar", "工作日历", "calendar.edit"),
    ("admin.departments", "部门与中心", "org.edit"),
    ("admin.police_beats", "警网关联", "org.edit"),
    ("admin.hotline_link", "12345 对接", "org.edit"),
    ("admin.categories", "事件类别", "category.edit"),
    ("admin.places", "区划网格", "place.edit"),
    ("admin.map", "地图底图", "map.edit"),
    ("admin.notifications", "消息通知", "notify.edit"),
    ("admin.security", "安全管理", "account.lock"),
    ("admin.audit_log", "审计日志", "audit.read"),
)


def nav_items(account) -> list[tuple[str, str, str]]:
    if account is None:
        return []
    return [item for item in NAV if item[0] in current_app.view_functions and has_permission(account, item[2])]


@bp.app_context_processor
def inject_nav():
    return {"nav_items": nav_items}


@bp.get("/")
@public  # shows the login page to strangers, the account's own tiles otherwise
def index():
    me = current_account()
    if me is None:
        return redirect(url_for("auth.login"))
    return render_template("main/index.html", me=me)
