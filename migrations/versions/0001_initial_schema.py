"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23

The whole domain model of shared/domain.md; on PostgreSQL the audit log refuses UPDATE and DELETE.
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('object_type', sa.String(length=30), nullable=True),
    sa.Column('object_id', sa.String(length=40), nullable=True),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_account_at', ['account_id', 'at'], unique=False)
        batch_op.create_index('ix_audit_at', ['at'], unique=False)

    op.create_table('categories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('dispatch_limit', sa.Integer(), nullable=True),
    sa.Column('dispatch_unit', sa.String(length=12), nullable=True),
    sa.Column('handle_limit', sa.Integer(), nullable=True),
    sa.Column('handle_unit', sa.String(length=12), nullable=True),
    sa.Column('must_escalate', sa.Boolean(), nullable=False),
    sa.Column('escalate_to', sa.String(length=10), nullable=True),
    sa.Column('escalate_limit', sa.Integer(), nullable=True),
    sa.Column('escalate_unit', sa.String(length=12), nullable=True),
    sa.Column('transfer_limit_minutes', sa.Integer(), nullable=True),
    sa.Column('warn_ratio', sa.Float(), nullable=False),
    sa.Column('warn_before_minutes', sa.Integer(), nullable=True),
    sa.Column('filing_condition', sa.Text(), nullable=True),
    sa.Column('closing_condition', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['categories.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_pending', ['processed_at', 'id'], unique=False)

    op.create_table('police_beats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('police_beats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_police_beats_town_id'), ['town_id'], unique=False)

    op.create_table('places',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('city_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('village_id', sa.Integer(), nullable=True),
    sa.Column('population', sa.Integer(), nullable=True),
    sa.Column('households', sa.Integer(), nullable=True),
    sa.Column('geometry', sa.JSON(), nullable=True),
    sa.Column('center_lat', sa.Float(), nullable=True),
    sa.Column('center_lon', sa.Float(), nullable=True),
    sa.Column('police_beat_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['places.id'], ),
    sa.ForeignKeyConstraint(['police_beat_id'], ['police_beats.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('places', schema=None) as batch_op:
        batch_op.create_index('ix_places_level_parent', ['level', 'parent_id'], unique=False)
        batch_op.create_index('ix_places_town', ['town_id'], unique=False)
        batch_op.create_index('ix_places_village', ['village_id'], unique=False)

    op.create_table('base_data_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('registered_population', sa.Integer(), nullable=False),
    sa.Column('linked_persons', sa.Integer(), nullable=False),
    sa.Column('households', sa.Integer(), nullable=False),
    sa.Column('buildings', sa.Integer(), nullable=False),
    sa.Column('houses', sa.Integer(), nullable=False),
    sa.Column('shops', sa.Integer(), nullable=False),
    sa.Column('enterprises', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('place_id', 'month', name='uq_base_data_place_month')
    )
    with op.batch_alter_table('base_data_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_base_data_counts_town_id'), ['town_id'], unique=False)

    op.create_table('centers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('centers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_centers_place_id'), ['place_id'], unique=False)

    op.create_table('departments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('party_organizations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('party_organizations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_party_organizations_town_id'), ['town_id'], unique=False)

    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('post', sa.String(length=20), nullable=True),
    sa.Column('place_id', sa.Integer(), nullable=False),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('village_id', sa.Integer(), nullable=True),
    sa.Column('center_id', sa.Integer(), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('can_unmask', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('password_changed_at', sa.DateTime(), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('last_login_at', sa.DateTime(), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['center_id'], ['centers.id'], ),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], ),
    sa.ForeignKeyConstraint(['place_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ix_accounts_role_place', ['role', 'place_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_accounts_town_id'), ['town_id'], unique=False)

    op.create_table('party_activities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('held_on', sa.Date(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['party_organizations.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('party_activities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_party_activities_organization_id'), ['organization_id'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=24), nullable=False),
    sa.Column('source', sa.String(length=12), nullable=False),
    sa.Column('client_key', sa.String(length=80), nullable=True),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('grid_id', sa.Integer(), nullable=True),
    sa.Column('village_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('reporter_id', sa.Integer(), nullable=True),
    sa.Column('reporter_center_id', sa.Integer(), nullable=True),
    sa.Column('caller_name', sa.String(length=64), nullable=True),
    sa.Column('caller_phone', sa.String(length=20), nullable=True),
    sa.Column('external_ref', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('valid', sa.Boolean(), nullable=True),
    sa.Column('duplicate_of_id', sa.Integer(), nullable=True),
    sa.Column('self_handled', sa.Boolean(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('discovered_at', sa.DateTime(), nullable=False),
    sa.Column('reported_at', sa.DateTime(), nullable=False),
    sa.Column('registered_at', sa.DateTime(), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(), nullable=True),
    sa.Column('transferred_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('dispatch_due', sa.DateTime(), nullable=True),
    sa.Column('handle_due', sa.DateTime(), nullable=True),
    sa.Column('escalate_due', sa.DateTime(), nullable=True),
    sa.Column('transfer_due', sa.DateTime(), nullable=True),
    sa.Column('overdue', sa.Boolean(), nullable=False),
    sa.Column('overdue_at', sa.DateTime(), nullable=True),
    sa.Column('paused_at', sa.DateTime(), nullable=True),
    sa.Column('pause_reason', sa.String(length=200), nullable=True),
    sa.Column('escalated_to_town', sa.Boolean(), nullable=False),
    sa.Column('escalated_to_city', sa.Boolean(), nullable=False),
    sa.Column('escalated_by_center_id', sa.Integer(), nullable=True),
    sa.Column('rework_count', sa.Integer(), nullable=False),
    sa.Column('outstanding', sa.Boolean(), nullable=False),
    sa.Column('outstanding_story', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['assignee_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], ),
    sa.ForeignKeyConstraint(['duplicate_of_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['escalated_by_center_id'], ['centers.id'], ),
    sa.ForeignKeyConstraint(['grid_id'], ['places.id'], ),
    sa.ForeignKeyConstraint(['reporter_center_id'], ['centers.id'], ),
    sa.ForeignKeyConstraint(['reporter_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number'),
    sa.UniqueConstraint('source', 'client_key', name='uq_cases_source_client_key')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_category_reported', ['category_id', 'reported_at'], unique=False)
        batch_op.create_index('ix_cases_grid_reported', ['grid_id', 'reported_at'], unique=False)
        batch_op.create_index('ix_cases_reported_at', ['reported_at'], unique=False)
        batch_op.create_index('ix_cases_reporter', ['reporter_id', 'reported_at'], unique=False)
        batch_op.create_index('ix_cases_state', ['state'], unique=False)
        batch_op.create_index('ix_cases_town_reported', ['town_id', 'reported_at'], unique=False)
        batch_op.create_index('ix_cases_village_reported', ['village_id', 'reported_at'], unique=False)

    op.create_table('heartbeats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('heartbeats', schema=None) as batch_op:
        batch_op.create_index('ix_heartbeats_account_at', ['account_id', 'at'], unique=False)
        batch_op.create_index('ix_heartbeats_at', ['at'], unique=False)

    op.create_table('login_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_records', schema=None) as batch_op:
        batch_op.create_index('ix_login_records_account_at', ['account_id', 'at'], unique=False)
        batch_op.create_index('ix_login_records_at', ['at'], unique=False)

    op.create_table('patrols',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gridworker_id', sa.Integer(), nullable=False),
    sa.Column('grid_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('track', sa.JSON(), nullable=True),
    sa.Column('distance_m', sa.Float(), nullable=True),
    sa.Column('client_key', sa.String(length=80), nullable=True),
    sa.ForeignKeyConstraint(['grid_id'], ['places.id'], ),
    sa.ForeignKeyConstraint(['gridworker_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_key')
    )
    with op.batch_alter_table('patrols', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patrols_town_id'), ['town_id'], unique=False)
        batch_op.create_index('ix_patrols_worker_started', ['gridworker_id', 'started_at'], unique=False)

    op.create_table('persons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('id_number', sa.String(length=18), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('person_type', sa.String(length=24), nullable=False),
    sa.Column('visit_frequency', sa.String(length=10), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('grid_id', sa.Integer(), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('assigned_to_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['assigned_to_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['grid_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index('ix_persons_grid', ['grid_id'], unique=False)
        batch_op.create_index('ix_persons_town_type', ['town_id', 'person_type'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('sign_ins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'day', name='uq_sign_ins_account_day')
    )
    with op.batch_alter_table('sign_ins', schema=None) as batch_op:
        batch_op.create_index('ix_sign_ins_day_town', ['day', 'town_id'], unique=False)

    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('site_type', sa.String(length=16), nullable=False),
    sa.Column('visit_frequency', sa.String(length=10), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('grid_id', sa.Integer(), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('assigned_to_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['assigned_to_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['grid_id'], ['places.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.create_index('ix_sites_town_type', ['town_id', 'site_type'], unique=False)

    op.create_table('web_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_account_id'), ['account_id'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('raised_at', sa.DateTime(), nullable=False),
    sa.Column('cleared_at', sa.DateTime(), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'kind', name='uq_alerts_case_kind')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_open', ['cleared_at', 'town_id'], unique=False)

    op.create_table('case_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('stored_name', sa.String(length=80), nullable=False),
    sa.Column('content_type', sa.String(length=40), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('case_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_photos_case_id'), ['case_id'], unique=False)

    op.create_table('case_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('from_state', sa.String(length=12), nullable=True),
    sa.Column('to_state', sa.String(length=12), nullable=False),
    sa.Column('from_level', sa.String(length=10), nullable=True),
    sa.Column('to_level', sa.String(length=10), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('case_steps', schema=None) as batch_op:
        batch_op.create_index('ix_case_steps_at', ['at'], unique=False)
        batch_op.create_index('ix_case_steps_case', ['case_id', 'id'], unique=False)

    op.create_table('disputes',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('screening_level', sa.String(length=10), nullable=False),
    sa.Column('mediation_level', sa.String(length=10), nullable=True),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('mediated_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.PrimaryKeyConstraint('case_id')
    )
    op.create_table('visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gridworker_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('client_key', sa.String(length=80), nullable=True),
    sa.ForeignKeyConstraint(['gridworker_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_key')
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index('ix_visits_person_at', ['person_id', 'at'], unique=False)
        batch_op.create_index('ix_visits_site_at', ['site_id', 'at'], unique=False)
        batch_op.create_index('ix_visits_town_at', ['town_id', 'at'], unique=False)



    if op.get_bind().dialect.name == "postgresql":
        # 安全审计: the audit log cannot be edited or deleted, not even by a bug in the application
        op.execute("""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only';
            END;
            $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
        """)
    else:
        op.execute("""
            CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
        """)
        op.execute("""
            CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
        """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_town_at')
        batch_op.drop_index('ix_visits_site_at')
        batch_op.drop_index('ix_visits_person_at')

    op.drop_table('visits')
    op.drop_table('disputes')
    with op.batch_alter_table('case_steps', schema=None) as batch_op:
        batch_op.drop_index('ix_case_steps_case')
        batch_op.drop_index('ix_case_steps_at')

    op.drop_table('case_steps')
    with op.batch_alter_table('case_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_photos_case_id'))

    op.drop_table('case_photos')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_open')

    op.drop_table('alerts')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_account_id'))

    op.drop_table('web_sessions')
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_index('ix_sites_town_type')

    op.drop_table('sites')
    with op.batch_alter_table('sign_ins', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_ins_day_town')

    op.drop_table('sign_ins')
    op.drop_table('settings')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index('ix_persons_town_type')
        batch_op.drop_index('ix_persons_grid')

    op.drop_table('persons')
    with op.batch_alter_table('patrols', schema=None) as batch_op:
        batch_op.drop_index('ix_patrols_worker_started')
        batch_op.drop_index(batch_op.f('ix_patrols_town_id'))

    op.drop_table('patrols')
    with op.batch_alter_table('login_records', schema=None) as batch_op:
        batch_op.drop_index('ix_login_records_at')
        batch_op.drop_index('ix_login_records_account_at')

    op.drop_table('login_records')
    with op.batch_alter_table('heartbeats', schema=None) as batch_op:
        batch_op.drop_index('ix_heartbeats_at')
        batch_op.drop_index('ix_heartbeats_account_at')

    op.drop_table('heartbeats')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_village_reported')
        batch_op.drop_index('ix_cases_town_reported')
        batch_op.drop_index('ix_cases_state')
        batch_op.drop_index('ix_cases_reporter')
        batch_op.drop_index('ix_cases_reported_at')
        batch_op.drop_index('ix_cases_grid_reported')
        batch_op.drop_index('ix_cases_category_reported')

    op.drop_table('cases')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_account_id'))

    op.drop_table('api_tokens')
    with op.batch_alter_table('party_activities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_party_activities_organization_id'))

    op.drop_table('party_activities')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_town_id'))
        batch_op.drop_index('ix_accounts_role_place')

    op.drop_table('accounts')
    with op.batch_alter_table('party_organizations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_party_organizations_town_id'))

    op.drop_table('party_organizations')
    op.drop_table('departments')
    with op.batch_alter_table('centers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_centers_place_id'))

    op.drop_table('centers')
    with op.batch_alter_table('base_data_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_base_data_counts_town_id'))

    op.drop_table('base_data_counts')
    with op.batch_alter_table('places', schema=None) as batch_op:
        batch_op.drop_index('ix_places_village')
        batch_op.drop_index('ix_places_town')
        batch_op.drop_index('ix_places_level_parent')

    op.drop_table('places')
    with op.batch_alter_table('police_beats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_police_beats_town_id'))

    op.drop_table('police_beats')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')

    op.drop_table('outbox')
    op.drop_table('categories')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_at')
        batch_op.drop_index('ix_audit_account_at')

    op.drop_table('audit_log')
