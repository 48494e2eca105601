CREATE TABLE IF NOT EXISTS "{TABLE}" (
  "message_id" VARCHAR NOT NULL,
  "type" VARCHAR NOT NULL,
  "stream" VARCHAR NOT NULL,
  "user_id" VARCHAR,
  "anonymous_id" VARCHAR,
  "event" VARCHAR,
  "name" VARCHAR,
  "group_id" VARCHAR,
  "previous_id" VARCHAR,
  "timestamp" TIMESTAMPTZ NOT NULL,
  "original_timestamp" TIMESTAMPTZ,
  "sent_at" TIMESTAMPTZ,
  "received_at" TIMESTAMPTZ NOT NULL,
  "properties" VARCHAR,
  "traits" VARCHAR,
  "context" VARCHAR,
  "integrations" VARCHAR,
  "payload" VARCHAR,
  "extras" VARCHAR
);

-- A table made by an older version: add extras, let payload be null (no-ops otherwise).
ALTER TABLE "{TABLE}" ADD COLUMN IF NOT EXISTS "extras" VARCHAR;
ALTER TABLE "{TABLE}" ALTER COLUMN "payload" DROP NOT NULL;

CREATE TABLE IF NOT EXISTS "_eventkit_loaded_files" (
  uri VARCHAR PRIMARY KEY,
  row_count BIGINT NOT NULL,
  loaded_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "identity_edges" (
  "id_type_1" VARCHAR NOT NULL,
  "id_value_1" VARCHAR NOT NULL,
  "id_type_2" VARCHAR NOT NULL,
  "id_value_2" VARCHAR NOT NULL,
  "kind" VARCHAR NOT NULL,
  "message_id" VARCHAR NOT NULL,
  "timestamp" TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "identities" (
  "id_type" VARCHAR NOT NULL,
  "id_value" VARCHAR NOT NULL,
  "profile_id" VARCHAR NOT NULL,
  "first_seen" TIMESTAMPTZ NOT NULL,
  "last_seen" TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "profile_merges" (
  "from_profile_id" VARCHAR NOT NULL,
  "into_profile_id" VARCHAR NOT NULL,
  "merged_at" TIMESTAMPTZ NOT NULL,
  "message_id" VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS "identity_rejections" (
  "id_type_1" VARCHAR NOT NULL,
  "id_value_1" VARCHAR NOT NULL,
  "id_type_2" VARCHAR,
  "id_value_2" VARCHAR,
  "rule" VARCHAR NOT NULL,
  "message_id" VARCHAR NOT NULL,
  "seen_at" TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "profiles" (
  "profile_id" VARCHAR NOT NULL,
  "user_id" VARCHAR,
  "anonymous_ids" VARCHAR[],
  "traits" JSON NOT NULL,
  "first_seen" TIMESTAMPTZ NOT NULL,
  "last_seen" TIMESTAMPTZ NOT NULL,
  "event_count" BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS "_eventkit_identity_events" (
  "message_id" VARCHAR NOT NULL,
  "type" VARCHAR NOT NULL,
  "timestamp" TIMESTAMPTZ NOT NULL,
  "id_type" VARCHAR,
  "id_value" VARCHAR,
  "traits" JSON
);

CREATE TABLE IF NOT EXISTS "dead_letters" (
  "message_id" VARCHAR,
  "stream" VARCHAR NOT NULL,
  "reason_code" VARCHAR NOT NULL,
  "reason" VARCHAR NOT NULL,
  "payload" VARCHAR NOT NULL,
  "received_at" TIMESTAMPTZ NOT NULL,
  "source" VARCHAR,
  "ip" VARCHAR,
  "user_agent" VARCHAR,
  "batch_context" VARCHAR,
  "batch_integrations" VARCHAR,
  "batch_sent_at" VARCHAR
);

CREATE TABLE IF NOT EXISTS "deletions" (
  "request_id" VARCHAR NOT NULL,
  "requested_at" TIMESTAMPTZ NOT NULL,
  "completed_at" TIMESTAMPTZ NOT NULL,
  "files_rewritten" BIGINT NOT NULL,
  "rows_removed" BIGINT NOT NULL
);

DROP INDEX IF EXISTS "identities_by_id";

CREATE INDEX IF NOT EXISTS "identities_by_value" ON "identities" (id_value);

CREATE INDEX IF NOT EXISTS "identities_by_profile" ON "identities" (profile_id);

CREATE INDEX IF NOT EXISTS "profiles_by_id" ON "profiles" (profile_id);

CREATE OR REPLACE VIEW "events" AS
SELECT e."message_id", e."type", e."stream", e."user_id", e."anonymous_id", e."event", e."name", e."group_id", e."previous_id", e."timestamp", e."original_timestamp", e."sent_at", e."received_at", CAST(e."properties" AS JSON) AS "properties", CAST(e."traits" AS JSON) AS "traits", CAST(e."context" AS JSON) AS "context", e."integrations", e."payload", CAST(e."extras" AS JSON) AS "extras",
  COALESCE(iu.profile_id, ia.profile_id) AS profile_id
FROM (
  SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras"
  FROM "{TABLE}"
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY message_id
    ORDER BY "received_at", "timestamp", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "original_timestamp", "sent_at", "properties", "traits", "context", "integrations", "payload", "extras"
  ) = 1
) AS e
LEFT JOIN "identities" AS iu
  ON iu.id_type = 'user_id' AND iu.id_value = TRIM(e.user_id)
LEFT JOIN "identities" AS ia
  ON ia.id_type = 'anonymous_id' AND ia.id_value = TRIM(e.anonymous_id);

CREATE OR REPLACE VIEW "tracks" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras", "profile_id"
FROM "events"
WHERE type = 'track';

CREATE OR REPLACE VIEW "identifies" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras", "profile_id"
FROM "events"
WHERE type = 'identify';

CREATE OR REPLACE VIEW "pages" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras", "profile_id"
FROM "events"
WHERE type = 'page';

CREATE OR REPLACE VIEW "screens" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras", "profile_id"
FROM "events"
WHERE type = 'screen';

CREATE OR REPLACE VIEW "groups" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras", "profile_id"
FROM "events"
WHERE type = 'group';

CREATE OR REPLACE VIEW "aliases" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload", "extras", "profile_id"
FROM "events"
WHERE type = 'alias';

CREATE OR REPLACE VIEW "users" AS
SELECT i.id_value AS user_id, i.profile_id, p.traits, i.first_seen, i.last_seen
FROM "identities" AS i
LEFT JOIN "profiles" AS p ON p.profile_id = i.profile_id
WHERE i.id_type = 'user_id';
