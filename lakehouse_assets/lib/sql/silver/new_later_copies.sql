-- later_copies (_source_file, _source_row), appending: the rule of later_copies.sql over the
-- new valid rows (typed_transactions) and the silver.transactions rows that share an identity
-- with one of them. Silver rows sort first (the watermark guarantees it) and are unique, so
-- every later copy found is a new row.
CREATE TEMP TABLE later_copies AS
WITH new_rows AS (
    SELECT
        _source_file,
        _source_row,
        _ingested_at,
        transaction_id,
        customer_id,
        event_time,
        amount,
        quantity
    FROM typed_transactions
    WHERE invalid_reason IS NULL
),

kept_twins AS (
    SELECT
        kept._source_file,
        kept._source_row,
        kept._ingested_at,
        kept.transaction_id,
        kept.customer_id,
        kept.event_time,
        kept.amount,
        kept.quantity
    FROM silver.transactions AS kept
    SEMI JOIN new_rows
        ON
            kept.transaction_id IS NOT DISTINCT FROM new_rows.transaction_id
            AND CASE WHEN kept.transaction_id IS NULL THEN kept.customer_id END
            IS NOT DISTINCT FROM
            CASE WHEN new_rows.transaction_id IS NULL THEN new_rows.customer_id END
            AND CASE WHEN kept.transaction_id IS NULL THEN kept.event_time END
            IS NOT DISTINCT FROM
            CASE WHEN new_rows.transaction_id IS NULL THEN new_rows.event_time END
            AND CASE WHEN kept.transaction_id IS NULL THEN kept.amount END
            IS NOT DISTINCT FROM
            CASE WHEN new_rows.transaction_id IS NULL THEN new_rows.amount END
            AND CASE WHEN kept.transaction_id IS NULL THEN kept.quantity END
            IS NOT DISTINCT FROM
            CASE WHEN new_rows.transaction_id IS NULL THEN new_rows.quantity END
),

candidates AS (
    SELECT * FROM new_rows
    UNION ALL
    SELECT * FROM kept_twins
)

SELECT
    _source_file,
    _source_row
FROM candidates
QUALIFY row_number() OVER (
    PARTITION BY
        transaction_id,
        CASE WHEN transaction_id IS NULL THEN customer_id END,
        CASE WHEN transaction_id IS NULL THEN event_time END,
        CASE WHEN transaction_id IS NULL THEN amount END,
        CASE WHEN transaction_id IS NULL THEN quantity END
    ORDER BY _ingested_at, _source_file, _source_row
) > 1
