-- customer_summary_rows (the changed customers') appended to gold.customer_summary.
INSERT INTO gold.customer_summary BY NAME
SELECT * FROM customer_summary_rows
