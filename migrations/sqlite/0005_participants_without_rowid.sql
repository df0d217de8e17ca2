-- Participants are stored in their primary key's order (WITHOUT ROWID): the table is then the
-- (room_id, id) index itself. Before, every join wrote a row into the rowid table and an entry
-- into the primary key's separate index, two B-trees and two pages per commit where one does.
-- Columns, keys and indexes are otherwise as before; every row is carried over.
CREATE TABLE participants_new (
    room_id        TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    id             TEXT NOT NULL,
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL,                -- SHA-256 of the participant token
    user_ref       TEXT,                         -- opaque chat user ref when joined through a chat
    joined_at      BIGINT NOT NULL,              -- first admission
    admitted_at    BIGINT NOT NULL,              -- latest admission (a rejoin moves it)
    left_at        BIGINT,                       -- NULL while the participant holds a slot
    present_since  BIGINT,                       -- NULL unless a room page is connected
    present_ms     BIGINT NOT NULL DEFAULT 0,    -- time spent connected, summed over visits
    node_id        TEXT,                         -- the bridge node holding its socket
    banned_at      BIGINT,                       -- set by remove: never admitted again
    PRIMARY KEY (room_id, id)
) WITHOUT ROWID;

INSERT INTO participants_new (room_id, id, name, token_hash, user_ref, joined_at, admitted_at, left_at, present_since,
                              present_ms, node_id, banned_at)
SELECT room_id, id, name, token_hash, user_ref, joined_at, admitted_at, left_at, present_since, present_ms, node_id, banned_at
FROM participants;

DROP TABLE participants;
ALTER TABLE participants_new RENAME TO participants;
CREATE INDEX participants_holding_slot ON participants (room_id) WHERE left_at IS NULL;
CREATE INDEX participants_present ON participants (node_id) WHERE present_since IS NOT NULL;
