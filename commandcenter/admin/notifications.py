"""消息通知: channels, preferences and the delivery log (issue 13 §7); the rules are in commandcenter/notify.py."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from ..access import current_account, require
from ..audit import audit
from ..db import db
from ..models import NOTIFY_CHANNEL_KINDS, NOTIFY_STATUSES, NotifyChannel
from . import bp

FORM_FIELDS = ("kind", "name", "url", "body_template", "header_name", "host", "port", "security", "user", "sender")


def _refused(action: str, object_id, exc) -> dict[str, str]:
    """Roll back a refused change, audit the refusal on its own (no secret), and hand the problems to the form."""
    db.rollback()
    audit(
        action, "notify_channel", object_id, success=False, detail="；".join(exc.problems.values())[:500], commit=True
    )
    return exc.problems


def _form() -> dict:
    form = {name: (request.form.get(name) or "")[:2500] for name in FORM_FIELDS}
    form["active"] = request.form.get("active", "")[:10]
    form["secret"] = (request.form.get("secret") or "")[:2500]
    form["clear_secret"] = bool(request.form.get("clear_secret"))
    return form


def _page(template: str, **context):
    from .. import notify

    return render_template(
        template,
        N=notify,
        KINDS=NOTIFY_CHANNEL_KINDS,
        STATUSES=NOTIFY_STATUSES,
        **context,
    )


@bp.route("/notifications", methods=["GET", "POST"])
@require("notify.edit")
def notifications():
    """消息通知: the city's channels (SMS gateway, 政务钉钉 / 企业微信 robots, SMTP); create a channel."""
    from .. import notify

    problems: dict[str, str] = {}
    form = {"kind": request.args.get("kind", "sms_http")[:20], "active": "on", "security": "starttls", "port": "25"}
    if request.method == "POST":
        form = _form()
        try:
            channel = notify.save_channel(current_account(), None, form)
        except notify.NotifyError as exc:
            problems = _refused("notify.channel_create", None, exc)
        else:
            db.commit()
            flash(f"已新建通知渠道「{channel.name}」", "info")
            return redirect(url_for("admin.notifications"))
    form.pop("secret", None)  # never sent back to the browser
    return _page(
        "admin/notifications.html", channels=notify.all_channels(), form=form, problems=problems
    ), 400 if problems else 200


@bp.route("/notifications/channels/<int:channel_id>", methods=["GET", "POST"])
@require("notify.edit")
def notification_channel(channel_id: int):
    """Edit a channel (the secret and the URL are kept when left empty), and send a test message."""
    from .. import notify

    channel = db.get(NotifyChannel, channel_id)
    if channel is None:
        abort(404)
    problems: dict[str, str] = {}
    cfg = channel.config or {}
    form = {
        "kind": channel.kind,
        "name": channel.name,
        "active": "on" if channel.active else "",
        # a URL carrying a token is shown masked as a placeholder only; empty keeps the stored one
        "url": cfg.get("url", "") if notify.mask_url(cfg.get("url")) == cfg.get("url", "") else "",
        "body_template": cfg.get("body_template", ""),
        "header_name": cfg.get("header_name", ""),
        "host": cfg.get("host", ""),
        "port": str(cfg.get("port", "")),
        "security": cfg.get("security", "starttls"),
        "user": cfg.get("user", ""),
        "sender": cfg.get("sender", ""),
    }
    if request.method == "POST":
        form = _form()
        try:
            notify.save_channel(current_account(), channel, form)
        except notify.NotifyError as exc:
            problems = _refused("notify.channel_edit", channel_id, exc)
            channel = db.get(NotifyChannel, channel_id)
        else:
            db.commit()
            flash(f"已保存通知渠道「{channel.name}」", "info")
            return redirect(url_for("admin.notification_channel", channel_id=channel_id))
    form.pop("secret", None)
    return _page(
        "admin/notifications_channel.html",
        channel=channel,
        form=form,
        problems=problems,
        recent=notify.deliveries(channel_id=channel_id, limit=10),
    ), 400 if problems else 200


@bp.post("/notifications/channels/<int:channel_id>/test")
@require("notify.edit")
def notification_test(channel_id: int):
    """发送测试消息: one attempt now; the result is on the page and in the delivery log."""
    from .. import notify

    channel = db.get(NotifyChannel, channel_id)
    if channel is None:
        abort(404)
    try:
        delivery = notify.send_test(current_account(), channel, (request.form.get("recipient") or "")[:200])
    except notify.NotifyError as exc:
        db.rollback()
        flash("；".join(exc.problems.values()), "error")
        return redirect(url_for("admin.notification_channel", channel_id=channel_id))
    if delivery.status == "sent":
        flash("测试消息已发送", "info")
    else:
        flash(f"测试消息发送失败：{delivery.last_error}", "error")
    return redirect(url_for("admin.notification_channel", channel_id=channel_id))


@bp.get("/notifications/log")
@require("notify.edit")
def notification_log():
    """发送记录: newest first, by status and channel, with the reason of each failure."""
    from .. import notify

    status = request.args.get("status", "")
    status = status if status in NOTIFY_STATUSES else ""
    channel_id = request.args.get("channel", type=int)
    before_id = request.args.get("before", type=int)
    rows = notify.deliveries(status=status or None, channel_id=channel_id, before_id=before_id, limit=100)
    return _page(
        "admin/notifications_log.html",
        rows=rows,
        status=status,
        channel_id=channel_id,
        channels=notify.all_channels(),
        more=rows[-1].id if len(rows) == 100 else None,
    )
