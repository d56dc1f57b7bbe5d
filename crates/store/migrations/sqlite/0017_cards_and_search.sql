-- The card a payment was made with, as the provider reported it (issue 15): shown on
-- every list and searched by its last 4 digits.
ALTER TABLE payments ADD COLUMN card_brand TEXT;
ALTER TABLE payments ADD COLUMN card_last4 TEXT;
CREATE INDEX payments_card_last4 ON payments (app_id, card_last4);
-- Customers found by email, whole or by its beginning, in any case: an exact match
-- and a prefix (a range over the lowercased email) both use this index.
CREATE INDEX customers_email ON customers (app_id, lower(email));
