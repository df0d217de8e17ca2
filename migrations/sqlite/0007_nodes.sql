-- Several nodes on one database.
-- Where other nodes reach a node (`[server] internal_url`): room sockets and webhooks that
-- belong elsewhere are passed on there.
ALTER TABLE nodes ADD COLUMN internal_url TEXT;
-- The node that serves a room's page sockets (and its SFU media); NULL until a page connects.
ALTER TABLE rooms ADD COLUMN home_node TEXT;
-- What a chat adapter keeps across runs and nodes (Telegram's update offset, which node
-- leads the adapter).
CREATE TABLE adapter_state (
    platform TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (platform, key)
);
-- Inbound updates taken by a node (a Telegram update id, a Matrix event id) and whether their
-- handling finished, so that a fail-over neither handles one twice nor loses one: the next
-- leader takes over what a stopped leader took and did not finish (`payload`: the update as
-- the platform sent it, where the platform will not send it again). Pruned after a day.
CREATE TABLE handled (
    platform TEXT NOT NULL,
    key      TEXT NOT NULL,
    at       BIGINT NOT NULL,
    node_id  TEXT NOT NULL,
    done     INTEGER NOT NULL DEFAULT 0,
    payload  TEXT,
    PRIMARY KEY (platform, key)
);
CREATE INDEX handled_at ON handled (at);
CREATE INDEX handled_open ON handled (platform) WHERE done = 0;
