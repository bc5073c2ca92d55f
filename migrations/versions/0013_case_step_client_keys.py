"""case steps sent from the gridworker's phone carry the app's idempotency key (issue 14 §1)

A step taken from the phone's offline queue (接收, 反馈) may be sent again after a lost answer: the key
makes the resend return the step already taken instead of a second step or a state error.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_steps") as batch:
        batch.add_column(sa.Column("client_key", sa.String(length=80), nullable=True))
        batch.create_unique_constraint("case_steps_client_key_key", ["client_key"])


def downgrade() -> None:
    with op.batch_alter_table("case_steps") as batch:
        batch.drop_constraint("case_steps_client_key_key", type_="unique")
        batch.drop_column("client_key")
