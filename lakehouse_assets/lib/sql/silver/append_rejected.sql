-- rejected_rows appended to silver.rejected_transactions.
INSERT INTO silver.rejected_transactions BY NAME
SELECT * FROM rejected_rows
