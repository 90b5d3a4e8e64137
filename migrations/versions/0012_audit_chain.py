"""audit trail: hash chains, signed checkpoints, archives, the district's certificate

Revision ID: 0012
Revises: 0008

Existing entries are chained here, in id order, one chain per school and one for the district, with
the same hashing the portal uses from now on (`portal.audit`).
"""
import sqlalchemy as sa
from alembic import op

from portal import audit
from portal.extensions import UTCDateTime

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None

# The trigger of 0001, with one controlled exception: `flask audit archive` deletes archived entries in a
# transaction that says so (SET LOCAL hocba.audit_archive = 'on'). Updates are never allowed.
APPEND_ONLY = """
    CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('hocba.audit_archive', true) = 'on' THEN RETURN OLD; END IF;
        RAISE EXCEPTION 'audit entries are append-only';
    END $$
"""
APPEND_ONLY_0001 = """
    CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$
"""


def _certificate_columns():
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('common_name', sa.String(length=200), nullable=False),
        sa.Column('subject', sa.String(length=1000), nullable=False),
        sa.Column('issuer', sa.String(length=1000), nullable=False),
        sa.Column('serial', sa.String(length=80), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
        sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
        sa.Column('certificate', sa.LargeBinary(), nullable=False),
        sa.Column('chain_pem', sa.Text(), nullable=False),
        sa.Column('key_kind', sa.Enum('pkcs12', 'pkcs11', 'usb', 'csc', name='keykind', native_enum=False,
                                      length=16), nullable=False),
        sa.Column('pkcs12_digest', sa.String(length=64), nullable=True),
        sa.Column('passphrase_sealed', sa.Text(), nullable=True),
        sa.Column('pkcs11_module', sa.String(length=300), nullable=True),
        sa.Column('pkcs11_token', sa.String(length=100), nullable=True),
        sa.Column('pkcs11_key_label', sa.String(length=100), nullable=True),
        sa.Column('pin_sealed', sa.Text(), nullable=True),
        sa.Column('csc_provider', sa.String(length=100), nullable=True),
        sa.Column('csc_credential_id', sa.String(length=200), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
    ]


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table('district_certificates',
    *_certificate_columns(),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_district_certificates_created_by_id_users')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_district_certificates_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_district_certificates')),
    sa.UniqueConstraint('district_id', 'fingerprint', name=op.f('uq_district_certificates_district_id_fingerprint'))
    )
    with op.batch_alter_table('district_certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_district_certificates_district_id'), ['district_id'], unique=False)

    op.create_table('audit_chain_heads',
    sa.Column('chain', sa.String(length=32), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.Column('last_entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_audit_chain_heads_school_id_schools')),
    sa.PrimaryKeyConstraint('chain', name=op.f('pk_audit_chain_heads'))
    )
    with op.batch_alter_table('audit_chain_heads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_chain_heads_school_id'), ['school_id'], unique=False)

    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chain', sa.String(length=32), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('last_entry_id', sa.Integer(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('document_digest', sa.String(length=64), nullable=False),
    sa.Column('signature_digest', sa.String(length=64), nullable=False),
    sa.Column('certificate_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('timestamped', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_audit_checkpoints_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_checkpoints_chain'), ['chain'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_checkpoints_school_id'), ['school_id'], unique=False)

    op.create_table('audit_archives',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chain', sa.String(length=32), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('first_seq', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('last_entry_id', sa.Integer(), nullable=False),
    sa.Column('before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('file_digest', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['audit_checkpoints.id'], name=op.f('fk_audit_archives_checkpoint_id_audit_checkpoints')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_audit_archives_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_archives')),
    sa.UniqueConstraint('chain', 'first_seq', name=op.f('uq_audit_archives_chain_first_seq'))
    )
    with op.batch_alter_table('audit_archives', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_archives_chain'), ['chain'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_archives_school_id'), ['school_id'], unique=False)

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('entry_hash', sa.String(length=64), nullable=True))

    if postgres:
        op.execute("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only")
    _chain_existing_entries()
    if postgres:
        op.execute("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only")
        op.execute(APPEND_ONLY)

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.alter_column('chain', existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('entry_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_entries_chain_seq'), ['chain', 'seq'])


def _chain_existing_entries():
    entries = sa.table('audit_entries', sa.column('id', sa.Integer), sa.column('at', UTCDateTime),
                       sa.column('actor_id', sa.Integer), sa.column('actor_name', sa.String),
                       sa.column('school_id', sa.Integer), sa.column('action', sa.String),
                       sa.column('object_type', sa.String), sa.column('object_id', sa.String),
                       sa.column('summary', sa.String), sa.column('changes', sa.JSON),
                       sa.column('address', sa.String), sa.column('chain', sa.String), sa.column('seq', sa.Integer),
                       sa.column('prev_hash', sa.String), sa.column('entry_hash', sa.String))
    heads = sa.table('audit_chain_heads', sa.column('chain', sa.String), sa.column('school_id', sa.Integer),
                     sa.column('seq', sa.Integer), sa.column('head_hash', sa.String),
                     sa.column('last_entry_id', sa.Integer))
    bind = op.get_bind()
    state: dict[str, tuple[int | None, int, str, int]] = {}
    last_id = 0
    while True:
        rows = bind.execute(sa.select(entries).where(entries.c.id > last_id).order_by(entries.c.id)
                            .limit(2000)).mappings().all()
        if not rows:
            break
        for row in rows:
            chain = audit.chain_of(row["school_id"])
            _school, seq, prev, _last = state.get(chain, (row["school_id"], 0, audit.GENESIS, 0))
            fields = {key: row[key] for key in ("id", "actor_id", "actor_name", "school_id", "action", "object_type",
                                                "object_id", "summary", "changes", "address")}
            fields.update(chain=chain, seq=seq + 1, prev_hash=prev, at=audit.canonical_time(row["at"]))
            digest = audit.hash_fields(fields)
            bind.execute(entries.update().where(entries.c.id == row["id"]).values(
                chain=chain, seq=seq + 1, prev_hash=prev, entry_hash=digest))
            state[chain] = (row["school_id"], seq + 1, digest, row["id"])
        last_id = rows[-1]["id"]
    for chain, (school_id, seq, head, last) in sorted(state.items()):
        bind.execute(heads.insert().values(chain=chain, school_id=school_id, seq=seq, head_hash=head,
                                           last_entry_id=last))


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(APPEND_ONLY_0001)
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_entries_chain_seq'), type_='unique')
        batch_op.drop_column('entry_hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
        batch_op.drop_column('chain')
    with op.batch_alter_table('audit_archives', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_archives_school_id'))
        batch_op.drop_index(batch_op.f('ix_audit_archives_chain'))
    op.drop_table('audit_archives')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_checkpoints_school_id'))
        batch_op.drop_index(batch_op.f('ix_audit_checkpoints_chain'))
    op.drop_table('audit_checkpoints')
    with op.batch_alter_table('audit_chain_heads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_chain_heads_school_id'))
    op.drop_table('audit_chain_heads')
    with op.batch_alter_table('district_certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_district_certificates_district_id'))
    op.drop_table('district_certificates')
