-- The deliveries in flight (leased), counted per app and endpoint at every claim so
-- that no app or failing endpoint holds more than its share of the delivery capacity.
-- Only leased rows enter this index; recording an attempt clears the lease.
CREATE INDEX deliveries_in_flight ON deliveries (leased_until_ms) WHERE leased_until_ms > 0;
