"""assessment months, bulletins, import keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('assessment_months',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.Column('table', sa.JSON(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=False),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['closed_by_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('place_id', 'month', name='uq_assessment_place_month')
    )
    op.create_table('bulletins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('problems', sa.Text(), nullable=True),
    sa.Column('requirements', sa.Text(), nullable=True),
    sa.Column('story_case_ids', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('progress_note', sa.String(length=200), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('content', sa.JSON(), nullable=True),
    sa.Column('docx', sa.LargeBinary(), nullable=True),
    sa.Column('built_at', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.ForeignKeyConstraint(['updated_by_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('place_id', 'month', name='uq_bulletins_place_month')
    )
    with op.batch_alter_table('login_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_key', sa.String(length=80), nullable=True))
        batch_op.create_unique_constraint('uq_login_records_import_key', ['import_key'])

    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code', sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint('uq_persons_code', ['code'])

    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code', sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint('uq_sites_code', ['code'])



def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sites_code', type_='unique')
        batch_op.drop_column('code')

    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_constraint('uq_persons_code', type_='unique')
        batch_op.drop_column('code')

    with op.batch_alter_table('login_records', schema=None) as batch_op:
        batch_op.drop_constraint('uq_login_records_import_key', type_='unique')
        batch_op.drop_column('import_key')

    op.drop_table('bulletins')
    op.drop_table('assessment_months')
