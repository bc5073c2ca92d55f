"""open311 clients and tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('open311_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('api_key_hash')
    )
    op.create_table('open311_tokens',
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['client_id'], ['open311_clients.id'], ),
    sa.PrimaryKeyConstraint('token')
    )
    with op.batch_alter_table('open311_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_open311_tokens_case_id'), ['case_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('open311_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_open311_tokens_case_id'))

    op.drop_table('open311_tokens')
    op.drop_table('open311_clients')
