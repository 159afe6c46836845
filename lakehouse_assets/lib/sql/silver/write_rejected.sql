-- silver.rejected_transactions rebuilt from rejected_rows.
CREATE OR REPLACE TABLE silver.rejected_transactions AS
SELECT * FROM rejected_rows
