-- returning_customers: the customers of silver_rows with a purchase after $cutoff, within
-- $horizon_days of it: the label's window, the only look past the cutoff.
CREATE OR REPLACE TEMP TABLE returning_customers AS
SELECT DISTINCT customer_id
FROM silver_rows
WHERE event_time > $cutoff AND event_time <= $cutoff + to_days($horizon_days)
