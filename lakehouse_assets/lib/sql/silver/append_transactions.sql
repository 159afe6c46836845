-- kept_transactions appended to silver.transactions.
INSERT INTO silver.transactions BY NAME
SELECT * FROM kept_transactions
