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
  "payload" VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS "_eventkit_loaded_files" (
  uri VARCHAR PRIMARY KEY,
  row_count BIGINT NOT NULL,
  loaded_at TIMESTAMPTZ NOT NULL
);

CREATE OR REPLACE VIEW "events" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "{TABLE}"
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY message_id
  ORDER BY received_at, "timestamp", payload
) = 1;

CREATE OR REPLACE VIEW "tracks" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "events"
WHERE type = 'track';

CREATE OR REPLACE VIEW "identifies" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "events"
WHERE type = 'identify';

CREATE OR REPLACE VIEW "pages" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "events"
WHERE type = 'page';

CREATE OR REPLACE VIEW "screens" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "events"
WHERE type = 'screen';

CREATE OR REPLACE VIEW "groups" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "events"
WHERE type = 'group';

CREATE OR REPLACE VIEW "aliases" AS
SELECT "message_id", "type", "stream", "user_id", "anonymous_id", "event", "name", "group_id", "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context", "integrations", "payload"
FROM "events"
WHERE type = 'alias';

CREATE OR REPLACE VIEW "users" AS
SELECT "user_id", "anonymous_id", "traits", "timestamp", "received_at", "message_id"
FROM "events"
WHERE type = 'identify' AND user_id IS NOT NULL
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY user_id
  ORDER BY "timestamp" DESC, received_at DESC, message_id DESC
) = 1;
