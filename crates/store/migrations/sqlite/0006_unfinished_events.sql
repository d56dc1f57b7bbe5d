-- Only events still waiting for their object, or whose application failed, are ever
-- looked up by outcome (the retry worker); the rest (nearly all) need not be in that
-- index. A partial index keeps each ingested event one B-tree insert lighter, and
-- its move from 'received' to its outcome touches no index at all.
DROP INDEX provider_events_outcome;
CREATE INDEX provider_events_unfinished ON provider_events (first_received)
    WHERE outcome IN ('pending', 'failed');
