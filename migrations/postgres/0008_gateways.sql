-- The chat platform a room was started from (NULL: the API or the CLI): with gateways, cards of
-- one room live on several platforms, and the host's private notices go through this one.
ALTER TABLE rooms ADD COLUMN platform TEXT;
