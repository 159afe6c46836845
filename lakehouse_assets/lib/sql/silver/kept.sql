-- The view kept_transactions: the valid rows of typed_transactions that are not later_copies,
-- as silver.transactions holds them.
CREATE OR REPLACE TEMP VIEW kept_transactions AS
SELECT
    typed.transaction_id,
    typed.customer_id,
    typed.event_time,
    typed.amount,
    typed.quantity,
    typed._source_file,
    typed._source_row,
    typed._ingested_at,
    typed.bucket
FROM typed_transactions AS typed
ANTI JOIN later_copies USING (_source_file, _source_row)
WHERE typed.invalid_reason IS NULL
