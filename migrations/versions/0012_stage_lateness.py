"""lateness per stage: cases.dispatch_late and cases.escalate_late (issue 12 §3b)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('dispatch_late', sa.Boolean(), server_default='0', nullable=False))
        batch.add_column(sa.Column('escalate_late', sa.Boolean(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.drop_column('escalate_late')
        batch.drop_column('dispatch_late')
