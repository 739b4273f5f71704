// SPDX-License-Identifier: Apache-2.0
// Schema migrations, applied in order; `user_version` records how many ran.

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
];
