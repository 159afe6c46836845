-- silver.transactions rebuilt from kept_transactions.
CREATE OR REPLACE TABLE silver.transactions AS
SELECT * FROM kept_transactions
