-- customer_days: one row per customer and day with a purchase, from silver_rows. The first of
-- two statements (active_days.sql counts them): DuckDB 1.5.5 did not spill a count of distinct
-- days in the summary's aggregation, nor the two-level count in one statement, and ran out of
-- memory at 100M transactions.
CREATE OR REPLACE TEMP TABLE customer_days AS
SELECT
    customer_id,
    event_time::DATE AS purchase_day
FROM silver_rows
GROUP BY ALL
