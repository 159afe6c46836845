-- The gold.customer_summary rows of changed_customers deleted, before append_summary.sql.
DELETE FROM gold.customer_summary
WHERE customer_id IN (SELECT customer_id FROM changed_customers)
