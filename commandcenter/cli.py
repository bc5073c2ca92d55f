"""The `flask` commands for operators: migrate, accounts, demo data, simulator, serve."""

from __future__ import annotations

import getpass
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .db import db


def register_cli(app: Flask) -> None:
    db_group = AppGroup("db", help="数据库迁移 (Alembic)。")

    @db_group.command("upgrade")
    @click.option("--revision", default="head")
    def db_upgrade(revision: str) -> None:
        """Bring the schema to the newest migration."""
        from .migrate import upgrade

        upgrade(current_app.config["SETTINGS"].database_url, revision)
        click.echo("数据库已迁移到最新版本")

    app.cli.add_command(db_group)

    calendar_group = AppGroup("calendar", help="工作日历：法定节假日与调休（国务院通知）。")

    @calendar_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    @click.option("--note", default=None, help="文号或说明，如 国办发明电〔2026〕X号")
    def calendar_import(path: str, note: str | None) -> None:
        """Load a year of the State Council's notice (CSV or JSON) and recompute the assumed deadlines."""
        from pathlib import Path

        from .calendar_notice import NoticeError, load_year, parse

        try:
            days, file_note = parse(path, Path(path).read_bytes())
            done = load_year(None, days, note or file_note)
        except NoticeError as exc:
            db.rollback()
            for problem in exc.problems:
                click.echo(f"{path}: {problem}", err=True)
            sys.exit(1)
        click.echo(
            f"已导入 {done['year']} 年：放假 {done['holidays']} 天，调休上班 {done['workdays']} 天；"
            f"重新计算时限 {done['recomputed']} 件"
        )

    @calendar_group.command("show")
    @click.argument("year", type=int)
    def calendar_show(year: int) -> None:
        """The holidays (休) and make-up workdays (班) the city holds for YEAR."""
        from .calendar_notice import year_rows
        from .workcalendar import year_known

        rows = year_rows(year)
        for row in rows:
            click.echo(f"{row.day.isoformat()}  {'班' if row.workday else '休'}  {row.name or ''}")
        if not rows:
            click.echo(f"{year} 年：{'按内置数据计算' if year_known(year) else '尚未导入，按周一至周五计算'}")

    app.cli.add_command(calendar_group)

    categories_group = AppGroup("categories", help="事件类别：安装国家默认类别树、导出、导入（JSON）。")

    @categories_group.command("install-default")
    def categories_install_default() -> None:
        """Install the national default tree when the category table is empty (safe to run again)."""
        from .category_admin import install_default, is_empty

        had = not is_empty()
        added = install_default(None)
        if had:
            click.echo("类别表已有数据，未安装默认类别树（已添加 0 个类别）")
        else:
            click.echo(f"已安装国家默认类别树：已添加 {added} 个类别")

    @categories_group.command("export")
    @click.argument("path", type=click.Path(dir_okay=False, writable=True))
    def categories_export(path: str) -> None:
        """Write the whole category tree (every field) to PATH as JSON."""
        from pathlib import Path

        from .audit import audit
        from .category_admin import export_items, export_json

        Path(path).write_text(export_json(), encoding="utf-8")
        count = len(export_items())
        audit("category.export", "category", None, detail=f"导出 {count} 个类别到 {path}", commit=True)
        click.echo(f"已导出 {count} 个类别到 {path}")

    @categories_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    def categories_import(path: str) -> None:
        """Upsert categories by code from a JSON export; any fault refuses the whole file."""
        from pathlib import Path

        from .category_admin import CategoryError, import_items, parse_import

        try:
            items, text = parse_import(Path(path).read_bytes())
            done = import_items(None, items, text)
        except CategoryError as exc:
            db.rollback()
            if not exc.audited:
                from .audit import audit

                audit("category.import", "category", None, success=False, detail=exc.message[:500], commit=True)
            for problem in exc.problems:
                click.echo(f"{path}: {problem}", err=True)
            click.echo(f"{path}: 未导入（共 {len(exc.problems)} 处错误）", err=True)
            sys.exit(1)
        click.echo(f"已导入：新增 {done['added']} 个，修改 {done['updated']} 个，未变 {done['unchanged']} 个")

    app.cli.add_command(categories_group)

    @app.cli.command("create-admin")
    @click.option("--username", prompt="用户名")
    @click.option("--name", "display_name", default="系统管理员")
    @click.option("--password", default=None, help="omit to be asked (never put it in shell history)")
    def create_admin(username: str, display_name: str, password: str | None) -> None:
        """Create the first system administrator, asking for a strong password."""
        from .accounts import AccountError, create_account
        from .models import Place

        city = db.query(Place).filter_by(level="city").first()
        if city is None:
            city = Place(code="000000", name="本市", level="city")
            db.add(city)
            db.flush()
            city.city_id = city.id
        if password is None:
            password = getpass.getpass("密码: ")
            if getpass.getpass("再次输入密码: ") != password:
                raise click.ClickException("两次输入的密码不一致")
        try:
            create_account(username=username, display_name=display_name, password=password, role="admin", place=city)
        except AccountError as exc:
            db.rollback()
            raise click.ClickException(f"{exc.field}: {exc.message}") from exc
        db.commit()
        click.echo(f"已创建系统管理员 {username}")

    demo = AppGroup("demo", help="演示数据与模拟器。")

    @demo.command("load")
    @click.option("--seed", default=20261123, show_default=True)
    @click.option("--scale", default=1.0, show_default=True, help="fraction of the full district size")
    @click.option("--force", is_flag=True, help="load even if the database already holds data")
    @click.option("--if-empty", is_flag=True, help="do nothing (and succeed) when data is already there")
    def demo_load(seed: int, scale: float, force: bool, if_empty: bool) -> None:
        """Build the demo district: towns, villages, grids, people, a month of history."""
        from .models import Place

        settings = current_app.config["SETTINGS"]
        if not settings.allow_default_passwords:
            raise click.ClickException(
                "服务器模式不加载演示账号（无默认口令）；如确需演示请设置 ALLOW_DEMO_PASSWORDS=1"
            )
        if if_empty and db.query(Place.id).first() is not None:
            click.echo("数据库中已有数据，跳过演示数据加载")
            return
        from .demo.loader import DemoError, load_demo

        try:
            summary = load_demo(seed=seed, scale=scale, force=force, progress=True)
        except DemoError as exc:
            raise click.ClickException(str(exc)) from exc
        for key, value in summary.items():
            click.echo(f"  {key}: {value}")

    @demo.command("simulate")
    @click.option("--speed", default=1.0, show_default=True, help="speed-up factor")
    @click.option("--duration", default=0, help="seconds to run; 0 runs until stopped")
    def demo_simulate(speed: float, duration: int) -> None:
        """Feed live events, patrols, sign-ins and logins at a realistic pace."""
        from .demo.simulator import run_simulator

        run_simulator(current_app._get_current_object(), speed=speed, duration=duration or None)

    app.cli.add_command(demo)

    @app.cli.command("serve")
    @click.option("--host", default="127.0.0.1")
    @click.option("--port", default=5000)
    @click.option("--simulate/--no-simulate", default=False)
    @click.option("--speed", default=1.0)
    def serve(host: str, port: int, simulate: bool, speed: float) -> None:
        """Run web + Socket.IO (+ in-process jobs and the simulator in embedded mode)."""
        from .serve import serve_forever

        serve_forever(current_app._get_current_object(), host=host, port=port, simulate=simulate, speed=speed)

    counters_group = AppGroup("counters", help="实时计数（Redis 缓存）。")

    @counters_group.command("rebuild")
    @click.option("--days", default=31, show_default=True)
    def counters_rebuild(days: int) -> None:
        """Recompute the live counters from the database and print the drift corrected."""
        from .jobs import rebuild_counters

        report = rebuild_counters(days)
        click.echo(f"检查 {report.get('keys_checked')} 个计数键，修正 {report.get('keys_fixed')} 个")

    app.cli.add_command(counters_group)

    accounts_group = AppGroup("accounts", help="账号：重置密码、建立账号（部署初期，页面见 /admin/accounts）。")

    @accounts_group.command("reset-password")
    @click.argument("username")
    def accounts_reset_password(username: str) -> None:
        """Give USERNAME a one-time password (printed once, never stored): it must be changed at the next login;
        the account's sessions and tokens end."""
        from .accounts import reset_password
        from .models import Account

        account = db.query(Account).filter_by(username=username.strip()).one_or_none()
        if account is None:
            click.echo(f"没有用户名为 {username} 的账号", err=True)
            sys.exit(1)
        password = reset_password(None, account)  # commits
        click.echo(f"{account.username} 的一次性密码（只显示这一次，下次登录时须修改）：{password}")

    @accounts_group.command("create")
    @click.option("--username", required=True)
    @click.option("--name", "display_name", required=True, help="姓名")
    @click.option("--role", required=True, help="角色代码，如 operator、gridworker、center_admin")
    @click.option("--place-code", required=True, help="所属区划或网格的代码")
    @click.option("--post", default=None, help="网格员岗位代码，如 full_time")
    @click.option("--center-place-code", default=None, help="综治中心所在区划的代码（综治中心管理员）")
    @click.option("--department-code", default=None, help="职能部门代码（职能部门账号）")
    @click.option("--phone", default=None)
    def accounts_create(
        username: str,
        display_name: str,
        role: str,
        place_code: str,
        post: str | None,
        center_place_code: str | None,
        department_code: str | None,
        phone: str | None,
    ) -> None:
        """Create an account with a one-time password (printed once; to be changed at the first login)."""
        from .accounts import AccountError, add_account
        from .models import Center, Department, Place

        def refuse(field: str, message: str) -> None:
            db.rollback()
            click.echo(f"{field}: {message}", err=True)
            sys.exit(1)

        place = db.query(Place).filter_by(code=place_code).one_or_none()
        if place is None:
            refuse("place-code", f"区划代码 {place_code} 不存在")
        center = department = None
        if center_place_code:
            where = db.query(Place).filter_by(code=center_place_code).one_or_none()
            center = db.query(Center).filter_by(place_id=where.id).first() if where else None
            if center is None:
                refuse("center-place-code", f"区划 {center_place_code} 没有综治中心")
        if department_code:
            department = db.query(Department).filter_by(code=department_code).one_or_none()
            if department is None:
                refuse("department-code", f"职能部门代码 {department_code} 不存在")
        try:
            account, password = add_account(
                None,
                username=username.strip(),
                display_name=display_name.strip(),
                role=role,
                place=place,
                post=post,
                phone=phone,
                center=center,
                department=department,
            )
        except AccountError as exc:
            refuse(exc.field, exc.message)
        db.commit()
        click.echo(f"已建立账号 {account.username}；一次性密码（只显示这一次，首次登录时须修改）：{password}")

    app.cli.add_command(accounts_group)

    from .open311.cli import register_open311_cli

    register_open311_cli(app)

    _register_import(app)

    @app.cli.command("check-password")
    def check_password() -> None:
        """Read a password on stdin and print what the complexity rules say of it."""
        from .security import password_problems

        problems = password_problems(sys.stdin.readline().rstrip("\n"))
        click.echo("；".join(problems) or "符合要求")


def _register_import(app: Flask) -> None:
    """`flask import <kind> <file>` and `flask import all <dir>` (formats: docs/import.md)."""
    from pathlib import Path

    from .importer import FORMATS, ORDER

    import_group = AppGroup("import", help="导入原平台的历史数据（CSV，格式见 docs/import.md）。")

    def report(result, max_errors: int) -> None:
        for error in result.errors[:max_errors]:
            click.echo(f"  错误 {error}", err=True)
        if len(result.errors) > max_errors:
            click.echo(f"  ……另有 {len(result.errors) - max_errors} 处错误未列出（--max-errors 可调整）", err=True)
        click.echo(result.summary())

    def after(results) -> None:
        from .importer import rebuild_live_counters

        if any(r.imported and r.new and r.kind in ("cases", "history") for r in results):
            click.echo(rebuild_live_counters())

    def options(f):
        f = click.option("--skip-bad-rows", is_flag=True, help="导入正确的行，跳过并报告有错误的行")(f)
        f = click.option("--max-errors", default=100, show_default=True, help="最多列出多少处错误")(f)
        return click.option("--progress/--no-progress", default=True, help="显示进度条")(f)

    def make(kind: str):
        fmt = FORMATS[kind]

        @import_group.command(kind, help=f"导入{fmt.title}（{fmt.filename}）。")
        @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
        @options
        def command(file: Path, skip_bad_rows: bool, max_errors: int, progress: bool) -> None:
            from .importer import import_file

            result = import_file(
                kind, file, tz=current_app.config["SETTINGS"].timezone, skip_bad_rows=skip_bad_rows, progress=progress
            )
            report(result, max_errors)
            after([result])
            if not result.imported:
                sys.exit(1)

        return command

    for kind in ORDER:
        make(kind)

    @import_group.command("all")
    @click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @options
    def import_all(directory: Path, skip_bad_rows: bool, max_errors: int, progress: bool) -> None:
        """导入目录中的全部文件（按依赖顺序：places、centers、accounts、persons、sites、cases、
        cases_history、patrols、signins、visits、logins）。"""
        from .importer import files_in, import_dir

        found = files_in(directory)
        if not found:
            names = ", ".join(FORMATS[k].filename for k in ORDER)
            raise click.ClickException(f"目录 {directory} 中没有可导入的文件（文件名应为：{names}）")
        click.echo("将按顺序导入：" + "、".join(p.name for _, p in found))
        results = import_dir(
            directory,
            tz=current_app.config["SETTINGS"].timezone,
            skip_bad_rows=skip_bad_rows,
            progress=progress,
            on_result=lambda r: report(r, max_errors),
        )
        after(results)
        if results and not results[-1].imported:
            rest = [p.name for _, p in found[len(results) :]]
            if rest:
                click.echo("因上面的文件未导入，以下文件未处理：" + "、".join(rest), err=True)
            sys.exit(1)
        new = sum(r.new for r in results)
        click.echo(f"完成：新增 {new} 行" + ("（全部数据此前已导入，数据库未改动）" if new == 0 else ""))

    app.cli.add_command(import_group)

    from .basemap import cli as basemap_group  # `flask basemap set-file|clear|show` (issue 13 §6)

    app.cli.add_command(basemap_group)

    from .place_admin import register_cli as register_places_cli  # `flask places import-geojson|check` (issue 13 §2)

    register_places_cli(app)
