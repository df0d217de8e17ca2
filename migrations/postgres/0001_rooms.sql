-- Rooms, the people admitted to them, knocks, and the bridge nodes that hold live sockets.
-- Times are milliseconds since the Unix epoch; flags are 0/1 integers. Both keep the SQL
-- identical on SQLite and PostgreSQL and the values exact.

CREATE TABLE rooms (
    id                TEXT PRIMARY KEY,          -- 22 chars [A-Za-z0-9], from a CSPRNG
    kind              TEXT NOT NULL,             -- 'video' | 'voice'
    title             TEXT,
    host_name         TEXT,                      -- display name of whoever minted it
    host_ref          TEXT,                      -- opaque chat user ref of the host (NULL from the API)
    chat_ref          TEXT,                      -- opaque chat ref where it was minted
    host_token_hash   TEXT NOT NULL,             -- SHA-256 of the host token
    max_participants  BIGINT NOT NULL,
    knock             BIGINT NOT NULL,           -- 1: a locked room takes requests to join
    locked            BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    last_active_at    BIGINT NOT NULL,           -- drives expiry
    ended_at          BIGINT,
    end_reason        TEXT,                      -- 'ended' | 'expired'
    version           BIGINT NOT NULL DEFAULT 0  -- bumped by every admission: takes the row lock
);

CREATE TABLE participants (
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
);
CREATE UNIQUE INDEX participants_by_token ON participants (room_id, token_hash);
CREATE INDEX participants_holding_slot ON participants (room_id) WHERE left_at IS NULL;
CREATE INDEX participants_present ON participants (node_id) WHERE present_since IS NOT NULL;

CREATE TABLE knocks (
    room_id      TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,                  -- becomes the participant token when admitted
    created_at   BIGINT NOT NULL,
    answered_at  BIGINT,
    answer       TEXT,                           -- 'admitted' | 'denied'
    PRIMARY KEY (room_id, id)
);

CREATE TABLE nodes (
    id       TEXT PRIMARY KEY,
    seen_at  BIGINT NOT NULL                     -- heartbeat; a silent node's sockets are gone
);
