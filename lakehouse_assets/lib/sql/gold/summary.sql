-- The view customer_summary_rows: each customer's summary (as gold.customer_summary holds it)
-- from silver_rows and active_days.
CREATE OR REPLACE TEMP VIEW customer_summary_rows AS
WITH per_customer AS (
    SELECT
        customer_id,
        min(event_time) AS first_purchase_at,
        max(event_time) AS last_purchase_at,
        count(*) AS transaction_count,
        sum(amount) AS total_amount,
        avg(amount) AS avg_amount,
        max(amount) AS max_amount,
        sum(quantity) AS total_quantity,
        avg(quantity) AS avg_quantity
    FROM silver_rows
    GROUP BY customer_id
)

SELECT
    per_customer.customer_id,
    per_customer.first_purchase_at,
    per_customer.last_purchase_at,
    per_customer.transaction_count,
    active_days.active_days,
    per_customer.total_amount,
    per_customer.avg_amount,
    per_customer.max_amount,
    per_customer.total_quantity,
    per_customer.avg_quantity
FROM per_customer
INNER JOIN active_days USING (customer_id)
