"""the limits a case was given (cases.limits), the places each department serves (department_places)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('limits', sa.JSON(), nullable=True))
    op.create_table('department_places',
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], ),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('department_id', 'place_id')
    )
    # every department served its one place until now: keep that as its first served place
    op.execute("INSERT INTO department_places (department_id, place_id) "
               "SELECT id, place_id FROM departments WHERE place_id IS NOT NULL")


def downgrade() -> None:
    op.drop_table('department_places')
    with op.batch_alter_table('cases') as batch:
        batch.drop_column('limits')
