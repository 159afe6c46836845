-- The view features_labelled: features_fresh with the label churned (1: no purchase within the
-- horizon after the cutoff, i.e. not in returning_customers), for training rows.
CREATE OR REPLACE TEMP VIEW features_labelled AS
SELECT
    fresh.*,
    CASE WHEN returning_customers.customer_id IS NULL THEN 1 ELSE 0 END AS churned
FROM features_fresh AS fresh
LEFT JOIN returning_customers USING (customer_id)
