-- Join cards posted in chats: which message shows which room, so the card updater can keep
-- editing it (also after a restart) and commands in a chat find the chat's latest room.
-- Same SQL on SQLite and PostgreSQL; times are milliseconds since the Unix epoch.

CREATE TABLE cards (
    room_id      TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    platform     TEXT NOT NULL,                 -- 'telegram' | 'matrix' | 'discord'
    chat_ref     TEXT NOT NULL,                 -- opaque chat ref
    message_ref  TEXT NOT NULL,                 -- opaque ref of the posted message
    created_at   BIGINT NOT NULL,
    rendered     TEXT,                          -- digest of the content last shown: skip edits that change nothing
    closed       BIGINT NOT NULL DEFAULT 0,     -- 1 once the final (ended) state is shown
    PRIMARY KEY (room_id, platform, chat_ref)
);
CREATE INDEX cards_by_chat ON cards (platform, chat_ref, created_at);
CREATE UNIQUE INDEX cards_by_message ON cards (platform, chat_ref, message_ref);
CREATE INDEX cards_open ON cards (platform) WHERE closed = 0;
