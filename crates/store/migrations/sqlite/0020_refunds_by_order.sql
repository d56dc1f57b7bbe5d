-- An order's refunds are read on every re-total of the order (`refunds::of_order`):
-- without an index on the order they were found by reading every refund of the app.
CREATE INDEX refunds_order ON refunds (order_id);
