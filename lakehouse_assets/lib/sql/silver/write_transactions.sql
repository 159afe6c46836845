-- silver.transactions recreated empty, with kept_transactions' columns: the caller partitions it
-- by bucket before append_transactions.sql fills it, so that each bucket has its own files.
CREATE OR REPLACE TABLE silver.transactions AS
SELECT * FROM kept_transactions
WHERE false
