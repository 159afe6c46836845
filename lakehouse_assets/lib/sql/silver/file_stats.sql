-- file_stats: per landed file version that a silver load processed (the rows of bronze_rows
-- ingested after $since, or all when $since is NULL in a full load), its rows, accepted,
-- rejected, invalid, and the rejects by reason (from silver.rejected_transactions, the load's
-- rows included), each with the first value that failed, as landed. bronze_rows and
-- bronze_files: bronze.transactions and bronze.ingested_files as the load read them.
CREATE OR REPLACE TEMP TABLE file_stats AS
WITH landed AS (
    SELECT
        _source_file AS source_file,
        count(*) AS rows  -- noqa: RF04
    FROM bronze_rows
    WHERE $since IS NULL OR _ingested_at > $since
    GROUP BY ALL
),

rejected AS (
    SELECT
        _source_file,
        _source_row,
        reason,
        CASE reason
            WHEN 'bad_amount' THEN amount
            WHEN 'bad_quantity' THEN quantity
            WHEN 'missing_customer_id' THEN coalesce(customer_id, '')
            WHEN 'duplicate'
                THEN
                    coalesce(transaction_id, concat_ws(' ', customer_id, event_time, amount))
            ELSE event_time
        END AS example
    FROM silver.rejected_transactions
    WHERE $since IS NULL OR _ingested_at > $since
),

reasons AS (
    SELECT
        _source_file AS source_file,
        reason,
        count(*) AS rows,  -- noqa: RF04
        min(_source_row) AS first_row,
        arg_min(coalesce(example, ''), _source_row) AS example
    FROM rejected
    GROUP BY ALL
),

listed AS (
    SELECT
        source_file,
        sum(rows) AS rejected,
        sum(rows) FILTER (WHERE reason != 'duplicate') AS invalid,
        -- sqlfluff 4.5 cannot parse an ordered aggregate:
        -- noqa: disable=PRS
        list(struct_pack(reason, rows, first_row, example) ORDER BY rows DESC, reason) AS rejects
        -- noqa: enable=PRS
    FROM reasons
    GROUP BY ALL
)

SELECT
    t.source_file,
    f.sha256,
    t.rows,
    t.rows - coalesce(l.rejected, 0) AS accepted,
    coalesce(l.rejected, 0) AS rejected,
    coalesce(l.invalid, 0) AS invalid,
    coalesce(l.rejects, []) AS rejects
FROM landed AS t
LEFT JOIN listed AS l USING (source_file)
LEFT JOIN bronze_files AS f USING (source_file)
