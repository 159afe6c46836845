-- The view rejected_rows: the invalid rows of typed_transactions and the later_copies, with their
-- text as landed (from bronze_rows), as silver.rejected_transactions holds them.
CREATE OR REPLACE TEMP VIEW rejected_rows AS
WITH reasons AS (
    SELECT
        _source_file,
        _source_row,
        invalid_reason AS reason
    FROM typed_transactions
    WHERE invalid_reason IS NOT NULL
    UNION ALL
    SELECT
        _source_file,
        _source_row,
        'duplicate' AS reason
    FROM later_copies
)

SELECT
    landed._source_file,
    landed._source_row,
    landed._ingested_at,
    reasons.reason,
    landed.transaction_id,
    landed.customer_id,
    landed.event_time,
    landed.amount,
    landed.quantity
FROM bronze_rows AS landed
INNER JOIN reasons USING (_source_file, _source_row)
