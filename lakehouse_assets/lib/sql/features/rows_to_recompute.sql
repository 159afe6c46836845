-- rows_to_recompute: the silver_in_bucket rows of customers_to_recompute, read once.
CREATE OR REPLACE TEMP TABLE rows_to_recompute AS
SELECT
    purchase.customer_id,
    purchase.event_time,
    purchase.amount,
    purchase.quantity
FROM silver_in_bucket AS purchase
SEMI JOIN customers_to_recompute USING (customer_id)
