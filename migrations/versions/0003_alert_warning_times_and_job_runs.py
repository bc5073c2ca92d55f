"""alert warning times and job runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('last_started_at', sa.DateTime(), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(), nullable=True),
    sa.Column('last_status', sa.String(length=10), nullable=True),
    sa.Column('last_detail', sa.Text(), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_warn_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('escalate_warn_at', sa.DateTime(), nullable=True))
        batch_op.create_index('ix_cases_escalate_warn', ['escalate_warn_at'], unique=False)
        batch_op.create_index('ix_cases_handle_due', ['handle_due'], unique=False)
        batch_op.create_index('ix_cases_transfer_warn', ['transfer_warn_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_transfer_warn')
        batch_op.drop_index('ix_cases_handle_due')
        batch_op.drop_index('ix_cases_escalate_warn')
        batch_op.drop_column('escalate_warn_at')
        batch_op.drop_column('transfer_warn_at')

    op.drop_table('job_runs')
