-- The rejected record itself, readable in SQL: the sink decodes a dead letter's payload with the
-- pipeline's schemas and stores it as JSON (JSONExtract* reads it). NULL when the payload cannot be
-- decoded (decode_error, unknown_schema), was cut short by the stage that rejected it, or its JSON
-- would be over 64 KiB; a payload that is itself JSON text (an MQTT gateway's message) is stored as
-- it is. Rows written before this migration hold NULL. Applying it again changes nothing.
ALTER TABLE dead_letters
    ADD COLUMN IF NOT EXISTS `payload_json` Nullable(String) CODEC(ZSTD(3))
        COMMENT 'The payload decoded as JSON (NULL: it could not be decoded).' AFTER `payload`;
