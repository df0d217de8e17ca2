-- Deployment-wide secrets, made once by whichever node starts first and shared by every node
-- on the database (e.g. the key that signs personal join links).
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
