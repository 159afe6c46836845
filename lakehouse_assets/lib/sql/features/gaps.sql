-- purchase_gaps: what needs each customer's purchases at or before $cutoff in order (a window),
-- from silver_rows: the days with a purchase (one more whenever the date changes; as
-- count(DISTINCT date) it took twice as long) and the gaps between purchases. Staged apart from
-- features_fresh: in one statement with its aggregates DuckDB ran out of memory at 100M
-- transactions. The last gap is 0 when the latest purchases tie.
CREATE OR REPLACE TEMP TABLE purchase_gaps AS
WITH ordered AS (
    SELECT
        customer_id,
        -- the gap to the previous purchase, NULL for the first
        date_diff('second', lag(event_time) OVER w, event_time) / 86400.0 AS gap_days,
        lead(event_time) OVER w IS NULL AS is_latest,
        ((lag(event_time) OVER w)::DATE IS DISTINCT FROM event_time::DATE) AS new_day
    FROM silver_rows
    WHERE event_time <= $cutoff
    WINDOW w AS (PARTITION BY customer_id ORDER BY event_time)
)

SELECT
    customer_id,
    count(*) FILTER (WHERE new_day) AS active_days,
    coalesce(max(gap_days), 0) AS max_gap_days,
    coalesce(stddev_samp(gap_days), 0) AS gap_std_days,
    coalesce(max(gap_days) FILTER (WHERE is_latest), 0) AS last_gap_days
FROM ordered
GROUP BY customer_id
