-- How a room's media travels: 'sfu' (through the daemon) or 'mesh' (browser to browser).
-- Rooms minted before the SFU existed were meshes, and stay so.
ALTER TABLE rooms ADD COLUMN media TEXT NOT NULL DEFAULT 'mesh';
