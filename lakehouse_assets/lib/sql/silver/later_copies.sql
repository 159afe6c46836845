-- later_copies (_source_file, _source_row): the valid rows of typed_transactions whose identity
-- an earlier valid row (by ingestion time, file, row) already has. A transaction's identity is
-- its transaction_id, else its whole record. Only rows whose transaction_id repeats (NULL
-- included) can be copies.
CREATE TEMP TABLE later_copies AS
WITH repeated AS (
    SELECT transaction_id
    FROM typed_transactions
    WHERE invalid_reason IS NULL
    GROUP BY ALL
    HAVING count(*) > 1
)

SELECT
    typed._source_file,
    typed._source_row
FROM typed_transactions AS typed
SEMI JOIN repeated ON typed.transaction_id IS NOT DISTINCT FROM repeated.transaction_id
WHERE typed.invalid_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY
        typed.transaction_id,
        CASE WHEN typed.transaction_id IS NULL THEN typed.customer_id END,
        CASE WHEN typed.transaction_id IS NULL THEN typed.event_time END,
        CASE WHEN typed.transaction_id IS NULL THEN typed.amount END,
        CASE WHEN typed.transaction_id IS NULL THEN typed.quantity END
    ORDER BY typed._ingested_at, typed._source_file, typed._source_row
) > 1
