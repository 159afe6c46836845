-- gold.customer_summary rebuilt from customer_summary_rows.
CREATE OR REPLACE TABLE gold.customer_summary AS
SELECT * FROM customer_summary_rows
