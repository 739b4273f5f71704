// SPDX-License-Identifier: Apache-2.0
// Schema migrations, applied in order; `user_version` records how many ran. Never edit one that
// shipped: append a new one.
//
// 2 (Swift compatibility): users inside accounts with scrypt-hashed keys; token expiry (v1 auth
// tokens live 24 h); account, container and object metadata as JSON text; per-container object
// count and bytes kept by triggers, so HEAD and account listings never scan objects; large
// object manifests (DLO prefix, SLO segment list) and X-Delete-At on objects.
//
// 3 (sharing, versions, quotas): groups of accounts owned by an account; per-object grants
// (X-Object-Sharing) keyed by the object's path, so they survive overwrites and go with a DELETE
// (ON DELETE CASCADE); a public flag; version numbers from one counter (`counters`), previous
// versions as rows pointing at their old frozen map (no data copied; GC treats them as map
// roots); a quota per account (NULL: none).
//
// 4 (images): an image is a file registered under a name with properties (JSON text). It names
// its file by path in its own account; the foreign key to objects cascades a DELETE of the file
// to the image (an overwrite is an UPDATE of the object row and keeps it).
//
// 5 (map-commit fencing): the lease epoch that last claimed a volume for writing
// (Metadata.claimVolume); map commits and snapshots carrying another epoch are refused, so a
// stalled node that lost its lease cannot overwrite the new holder's map.
//
// 6 (I/O pipelines): each volume's pipeline spec (canonical text, '' = none) and the node whose
// write-back log holds data not yet drained into it (NULL = none); see docs/pipeline.md.

export const migrations: readonly string[] = [
  `
  CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL
  );
  CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    user TEXT NOT NULL,
    admin INTEGER NOT NULL,
    superuser INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
  );
  CREATE TABLE maps (
    id INTEGER PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    parent_id INTEGER REFERENCES maps(id),
    parent_limit_bytes INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    frozen INTEGER NOT NULL,
    hashed INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX maps_parent ON maps(parent_id);
  CREATE TABLE map_entries (
    map_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    ref TEXT NOT NULL,
    PRIMARY KEY (map_id, idx)
  ) WITHOUT ROWID;
  CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name),
    name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    map_id INTEGER NOT NULL REFERENCES maps(id),
    origin TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (account, name)
  );
  CREATE TABLE containers (
    account TEXT NOT NULL REFERENCES accounts(name),
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (account, name)
  );
  CREATE TABLE objects (
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    map_id INTEGER NOT NULL REFERENCES maps(id),
    size_bytes INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    hash TEXT NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (account, container, name),
    FOREIGN KEY (account, container) REFERENCES containers(account, name)
  );
  CREATE INDEX objects_map ON objects(map_id);
  CREATE TABLE snapshots (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    volume_name TEXT NOT NULL,
    map_id INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    blocks_total INTEGER NOT NULL,
    blocks_hashed INTEGER NOT NULL,
    PRIMARY KEY (account, name)
  );
  `,
  `
  CREATE TABLE users (
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (account, name)
  );
  ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
  CREATE INDEX tokens_expiry ON tokens(expires_ms) WHERE expires_ms IS NOT NULL;
  ALTER TABLE accounts ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE containers ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE containers ADD COLUMN object_count INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE containers ADD COLUMN bytes_used INTEGER NOT NULL DEFAULT 0;
  UPDATE containers SET
    object_count = (SELECT COUNT(*) FROM objects o
                    WHERE o.account = containers.account AND o.container = containers.name),
    bytes_used = (SELECT COALESCE(SUM(o.size_bytes), 0) FROM objects o
                  WHERE o.account = containers.account AND o.container = containers.name);
  ALTER TABLE objects ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE objects ADD COLUMN manifest TEXT;
  ALTER TABLE objects ADD COLUMN slo TEXT;
  ALTER TABLE objects ADD COLUMN delete_at_ms INTEGER;
  CREATE TRIGGER objects_counted_insert AFTER INSERT ON objects BEGIN
    UPDATE containers SET object_count = object_count + 1,
      bytes_used = bytes_used + NEW.size_bytes
    WHERE account = NEW.account AND name = NEW.container;
  END;
  CREATE TRIGGER objects_counted_delete AFTER DELETE ON objects BEGIN
    UPDATE containers SET object_count = object_count - 1,
      bytes_used = bytes_used - OLD.size_bytes
    WHERE account = OLD.account AND name = OLD.container;
  END;
  CREATE TRIGGER objects_counted_update AFTER UPDATE OF size_bytes ON objects BEGIN
    UPDATE containers SET bytes_used = bytes_used - OLD.size_bytes + NEW.size_bytes
    WHERE account = NEW.account AND name = NEW.container;
  END;
  `,
  `
  CREATE TABLE groups (
    owner TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
  );
  CREATE TABLE group_members (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (owner, name, member),
    FOREIGN KEY (owner, name) REFERENCES groups(owner, name) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX group_members_member ON group_members(member);
  CREATE TABLE object_shares (
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    grantee TEXT NOT NULL,
    write INTEGER NOT NULL,
    PRIMARY KEY (account, container, name, grantee),
    FOREIGN KEY (account, container, name) REFERENCES objects(account, container, name)
      ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX object_shares_grantee ON object_shares(grantee);
  ALTER TABLE objects ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE objects ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
  UPDATE objects SET version = rowid;
  CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
  INSERT INTO counters(name, value)
    VALUES ('version', (SELECT COALESCE(MAX(rowid), 0) FROM objects));
  CREATE TABLE object_versions (
    version INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    map_id INTEGER NOT NULL REFERENCES maps(id),
    size_bytes INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    hash TEXT NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    manifest TEXT,
    slo TEXT
  );
  CREATE INDEX object_versions_path ON object_versions(account, container, name, version);
  CREATE INDEX object_versions_map ON object_versions(map_id);
  ALTER TABLE accounts ADD COLUMN quota_bytes INTEGER;
  `,
  `
  CREATE TABLE images (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    container TEXT NOT NULL,
    object TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (account, name),
    FOREIGN KEY (account, container, object) REFERENCES objects(account, container, name)
      ON DELETE CASCADE
  );
  CREATE INDEX images_file ON images(account, container, object);
  `,
  // 5: map-commit fencing.
  `
  ALTER TABLE volumes ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
  `,
  // 6: I/O pipelines.
  `
  ALTER TABLE volumes ADD COLUMN pipeline TEXT NOT NULL DEFAULT '';
  ALTER TABLE volumes ADD COLUMN log_owner TEXT;
  CREATE INDEX volumes_log_owner ON volumes(log_owner) WHERE log_owner IS NOT NULL;
  `,
];
