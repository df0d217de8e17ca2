-- Ringing people into calls, private prompts, the host's notices, and scheduled calls.
-- Who asked to be rung for a chat's calls (`/ringme`): per platform, chat and user.
CREATE TABLE ring_optins (
    platform   TEXT NOT NULL,
    chat_ref   TEXT NOT NULL,
    user_ref   TEXT NOT NULL,
    name       TEXT NOT NULL,                  -- their display name when they opted in
    handle     TEXT,                           -- their @-name, lowercase, where the platform has one
    created_at BIGINT NOT NULL,
    PRIMARY KEY (platform, chat_ref, user_ref)
);
-- One person rung into a room, and how they answered.
CREATE TABLE rings (
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL,
    user_ref    TEXT NOT NULL,
    name        TEXT NOT NULL,
    rung_by     TEXT NOT NULL,                 -- user ref of whoever rang them
    rung_by_name TEXT NOT NULL,                -- and their name
    state       TEXT NOT NULL,                 -- 'ringing' | 'accepted' | 'declined' | 'missed' | 'unreachable'
    rung_at     BIGINT NOT NULL,
    answered_at BIGINT,
    message     TEXT,                          -- the ringer's words, shown as typed
    PRIMARY KEY (room_id, platform, user_ref)
);
CREATE INDEX rings_waiting ON rings (platform, rung_at) WHERE state = 'ringing';
-- Private messages with buttons the bot sent: a ring to answer, a knock for the host to admit.
CREATE TABLE prompts (
    platform    TEXT NOT NULL,
    chat_ref    TEXT NOT NULL,                 -- the private chat
    message_ref TEXT NOT NULL,
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,                 -- 'ring' | 'knock'
    subject     TEXT NOT NULL,                 -- the rung user's ref, or the knock id
    PRIMARY KEY (platform, chat_ref, message_ref)
);
CREATE INDEX prompts_by_subject ON prompts (room_id, purpose, subject);
-- The chat's name where the room was minted (rings say which chat calls).
ALTER TABLE rooms ADD COLUMN chat_name TEXT;
-- A scheduled call's start (`/call at 18:00 …`); its page opens 10 minutes before.
ALTER TABLE rooms ADD COLUMN starts_at BIGINT;
-- Which reminder of a scheduled call a card's chat got: 0 none, 1 ten minutes before, 2 the start.
ALTER TABLE cards ADD COLUMN reminded BIGINT NOT NULL DEFAULT 0;
-- The host hears privately who arrives (`/notify`).
ALTER TABLE rooms ADD COLUMN notify_host BIGINT NOT NULL DEFAULT 0;
-- A knock's private notice to the host went out (claimed once, whichever node leads).
ALTER TABLE knocks ADD COLUMN notified_at BIGINT;
