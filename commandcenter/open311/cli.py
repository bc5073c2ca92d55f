"""`flask open311 …`: manage the API keys of Open311 clients.

flask open311 add-client "市民随手拍"     prints the new api_key once; only its sha256 is kept
flask open311 list-clients
flask open311 disable-client 3           the key stops working at once (enable-client undoes it)
"""

from __future__ import annotations

import secrets

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from ..audit import audit
from ..db import db
from ..models import Open311Client, Open311Token
from ..security import token_digest
from ..timeutil import fmt

NAME_MAX = 100


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def create_client(name: str) -> tuple[Open311Client, str]:
    """A new active client and its key in clear (the caller shows it once; the database keeps its digest)."""
    name = name.strip()
    if not name:
        raise ValueError("客户端名称不能为空")
    if len(name) > NAME_MAX:
        raise ValueError(f"客户端名称不能超过 {NAME_MAX} 个字")
    key = new_api_key()
    client = Open311Client(name=name, api_key_hash=token_digest(key), active=True)
    db.add(client)
    db.flush()
    audit("open311.client_add", "open311_client", client.id, detail=name)
    db.commit()
    return client, key


def register_open311_cli(app: Flask) -> None:
    group = AppGroup("open311", help="Open311 GeoReport v2 客户端（api_key）管理。")

    @group.command("add-client")
    @click.argument("name")
    def add_client(name: str) -> None:
        """Create a client and print its api_key once."""
        try:
            client, key = create_client(name)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"已创建 Open311 客户端 #{client.id}「{client.name}」")
        click.echo("api_key（只显示这一次，系统只保存其摘要，请立即妥善转交）：")
        click.echo(key)

    @group.command("list-clients")
    def list_clients() -> None:
        """Every client: id, state, creation time, requests filed, name (never a key)."""
        counts = dict(db.execute(select(Open311Token.client_id, func.count()).group_by(Open311Token.client_id)).all())
        clients = db.execute(select(Open311Client).order_by(Open311Client.id)).scalars().all()
        if not clients:
            click.echo("尚无 Open311 客户端；用 flask open311 add-client 名称 创建")
            return
        tz = current_app.config["SETTINGS"].timezone
        click.echo("编号\t状态\t创建时间\t\t已提交\t名称")
        for client in clients:
            state = "启用" if client.active else "停用"
            click.echo(f"{client.id}\t{state}\t{fmt(client.created_at, tz)}\t{counts.get(client.id, 0)}\t{client.name}")

    def _set_active(client_id: int, active: bool) -> Open311Client:
        client = db.get(Open311Client, client_id)
        if client is None:
            raise click.ClickException(f"没有编号为 {client_id} 的 Open311 客户端")
        client.active = active
        audit(
            "open311.client_enable" if active else "open311.client_disable",
            "open311_client",
            client.id,
            detail=client.name,
        )
        db.commit()
        return client

    @group.command("disable-client")
    @click.argument("client_id", type=int)
    def disable_client(client_id: int) -> None:
        """Stop a client's api_key from working (its filed requests stay)."""
        client = _set_active(client_id, False)
        click.echo(f"已停用 Open311 客户端 #{client.id}「{client.name}」")

    @group.command("enable-client")
    @click.argument("client_id", type=int)
    def enable_client(client_id: int) -> None:
        """Let a disabled client's api_key work again."""
        client = _set_active(client_id, True)
        click.echo(f"已启用 Open311 客户端 #{client.id}「{client.name}」")

    app.cli.add_command(group)
