"""security: public notes on case steps, login locks per account and address, security alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case_steps') as batch:
        batch.add_column(sa.Column('public', sa.Boolean(), server_default='0', nullable=False))
    op.create_table('login_locks',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_failure_at', sa.DateTime(), nullable=True),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('account_id', 'address')
    )
    op.create_index(op.f('ix_login_locks_locked_until'), 'login_locks', ['locked_until'], unique=False)
    op.create_table('security_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_security_alerts_at'), 'security_alerts', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_security_alerts_at'), table_name='security_alerts')
    op.drop_table('security_alerts')
    op.drop_index(op.f('ix_login_locks_locked_until'), table_name='login_locks')
    op.drop_table('login_locks')
    with op.batch_alter_table('case_steps') as batch:
        batch.drop_column('public')
