-- file_stats: per landed file version that a silver load processed (typed_transactions, its
-- later_copies, and the rows it rejected: those ingested after $since, or all when $since is
-- NULL in a full load), its rows, accepted, rejected, invalid, and the rejects by reason, each
-- with the first value that failed, as landed.
CREATE OR REPLACE TEMP TABLE file_stats AS
WITH typed AS (
    SELECT
        _source_file AS source_file,
        count(*) AS rows,  -- noqa: RF04
        count(*) FILTER (WHERE invalid_reason IS NOT NULL) AS invalid
    FROM typed_transactions
    GROUP BY ALL
),

copies AS (
    SELECT
        _source_file AS source_file,
        count(*) AS duplicates
    FROM later_copies
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
    t.rows - t.invalid - coalesce(c.duplicates, 0) AS accepted,
    t.invalid + coalesce(c.duplicates, 0) AS rejected,
    t.invalid,
    coalesce(l.rejects, []) AS rejects
FROM typed AS t
LEFT JOIN copies AS c USING (source_file)
LEFT JOIN listed AS l USING (source_file)
LEFT JOIN bronze.ingested_files AS f USING (source_file)
