"""case steps sent from the gridworker's phone carry the app's idempotency key (issue 14 §1)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the /g/ work (issue 14)


def downgrade() -> None:
    pass
