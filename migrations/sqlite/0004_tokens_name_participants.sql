-- Participant and knock tokens now begin with their participant id: a token is found by the
-- primary key (room_id, id) and checked against its stored hash. The index over random token
-- hashes, which cost every join a write to a random page, goes. Tokens issued before this
-- migration no longer name a participant: their holders join again as new participants.
DROP INDEX participants_by_token;
