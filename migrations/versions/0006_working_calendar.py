"""working calendar in the database (years and their holidays / make-up workdays), deadline_assumed on cases

The years the chinesecalendar library knows are seeded here, so that the administrator sees every year the
city holds on one page; later years come from the State Council's notice (flask calendar import, or the
page /admin/calendar).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# the library names its holidays in English; the calendar page speaks Chinese
CHINESE = {"New Year's Day": "元旦", "Spring Festival": "春节", "Tomb-sweeping Day": "清明节",
           "Labour Day": "劳动节", "Dragon Boat Festival": "端午节", "National Day": "国庆节",
           "Mid-autumn Festival": "中秋节", "Anti-Fascist 70th Day": "抗战胜利70周年纪念日"}


def upgrade() -> None:
    years = op.create_table('calendar_years',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.Column('loaded_at', sa.DateTime(), nullable=False),
    sa.Column('loaded_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['loaded_by_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('year')
    )
    days = op.create_table('calendar_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('workday', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['year'], ['calendar_years.year'], ),
    sa.PrimaryKeyConstraint('day')
    )
    op.create_index(op.f('ix_calendar_days_year'), 'calendar_days', ['year'], unique=False)
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('deadline_assumed', sa.Boolean(), server_default='0', nullable=False))

    try:
        from chinese_calendar import constants
    except ImportError:  # the app depends on it; a bare alembic run without it seeds nothing
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    known = sorted({d.year for d in constants.holidays} | {d.year for d in constants.workdays})
    op.bulk_insert(years, [{"year": y, "source": "library", "note": "chinesecalendar 内置", "loaded_at": now}
                           for y in known])
    rows = [{"day": d, "year": d.year, "workday": False, "name": CHINESE.get(n, n)[:40]}
            for d, n in constants.holidays.items()]
    rows += [{"day": d, "year": d.year, "workday": True, "name": (CHINESE.get(n, n) + "调休上班")[:40]}
             for d, n in constants.workdays.items()]
    op.bulk_insert(days, sorted(rows, key=lambda r: r["day"]))


def downgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.drop_column('deadline_assumed')
    op.drop_index(op.f('ix_calendar_days_year'), table_name='calendar_days')
    op.drop_table('calendar_days')
    op.drop_table('calendar_years')
