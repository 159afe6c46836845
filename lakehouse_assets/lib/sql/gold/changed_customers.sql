-- changed_customers: the customers with silver_in_bucket rows ingested after $since, the
-- load gold last summarized.
CREATE OR REPLACE TEMP TABLE changed_customers AS
SELECT DISTINCT customer_id
FROM silver_in_bucket
WHERE _ingested_at > $since
