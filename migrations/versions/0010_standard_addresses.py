"""the standard address list (standard_addresses), imported with `flask import` (issue 12 §4)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'standard_addresses',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=40), nullable=False),
        sa.Column('address', sa.String(length=200), nullable=False),
        sa.Column('grid_id', sa.Integer(), nullable=True),
        sa.Column('village_id', sa.Integer(), nullable=True),
        sa.Column('town_id', sa.Integer(), nullable=True),
        sa.Column('lat', sa.Float(), nullable=True),
        sa.Column('lon', sa.Float(), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['grid_id'], ['places.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code'),
    )
    op.create_index('ix_standard_addresses_grid', 'standard_addresses', ['grid_id'])
    op.create_index('ix_standard_addresses_town', 'standard_addresses', ['town_id'])


def downgrade() -> None:
    op.drop_index('ix_standard_addresses_town', table_name='standard_addresses')
    op.drop_index('ix_standard_addresses_grid', table_name='standard_addresses')
    op.drop_table('standard_addresses')
