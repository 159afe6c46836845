-- changed_customers: the customers with silver.transactions rows ingested after $since, the
-- load gold last summarized.
CREATE TEMP TABLE changed_customers AS
SELECT DISTINCT customer_id
FROM silver.transactions
WHERE _ingested_at > $since
